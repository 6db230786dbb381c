"""The chat client: talk to the durable agent from a terminal, or from a pipe.

    uv run client.py                        # a new conversation
    uv run client.py --conversation-id ID   # resume one

Each line is one message, sent to the conversation's workflow as the Update `send_message`; the
answer is printed after `Agent:`. It needs a Temporal server and the orchestrator worker (see the
README, or run everything with `uv run demo`), and connects with the SDK's environment
configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_API_KEY`, ...). The chat itself is in `app/cli/`.
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from app.cli.chat import program as chat
from app.core.exiting import exit_now


async def main(argv: list[str] | None = None, client: Client | None = None) -> int:
    """Run the chat; returns the exit code (0 on quit, 1 when it cannot start)."""
    return await chat.main(argv, client, prog="client.py", resume_command="uv run client.py")


if __name__ == "__main__":
    # Flush and leave at once: a normal teardown can crash while the SDK's threads still run.
    exit_now(asyncio.run(main()))

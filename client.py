"""The chat client: talk to the durable agent from a terminal, or from a pipe.

    uv run client.py                        # a new conversation
    uv run client.py --conversation-id ID   # resume one

Each line is one message, sent as the Update `send_message`; the answer is printed as `Agent:`.
It needs a Temporal server and the orchestrator worker (see the README), and connects with the
SDK's environment configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_API_KEY`, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from temporalio.client import Client

from app.chat import ChatError, ChatSession, chat_loop, web_ui_link
from app.llm_client import choose_model
from app.shared import ORCHESTRATOR_NAMESPACE
from app.temporal_client import connect, describe_connection_error


async def main(argv: list[str] | None = None, client: Client | None = None) -> int:
    parser = argparse.ArgumentParser(description="Chat with the durable agent.")
    parser.add_argument("--conversation-id", help="resume this conversation")
    args = parser.parse_args(argv)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    # Importing LiteLLM to describe the model takes seconds: do it while connecting.
    model = asyncio.create_task(asyncio.to_thread(lambda: choose_model().describe()))
    try:
        client = client or await connect(ORCHESTRATOR_NAMESPACE)
    except Exception as err:
        print(describe_connection_error(err), file=sys.stderr)
        return 1
    session = ChatSession(client, interactive=interactive)
    try:
        conversation_id = await session.start(args.conversation_id)
    except ChatError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"Conversation: {conversation_id}")
    print(f"Model: {await model}")
    link = web_ui_link(client.service_client.config.target_host, client.namespace, conversation_id)
    if link:
        print(f"Web UI: {link}")
    print("Type a message, /help for commands, quit to leave.")
    try:
        await chat_loop(session)
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    print(f"Resume with: uv run client.py --conversation-id {session.handle and session.handle.id}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)

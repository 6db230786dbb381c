"""The chat program behind `client.py` (and the chat part of `uv run demo`).

It connects, starts a conversation (an `AgentWorkflow` run) or attaches to one, and hands the
terminal to a `ChatSession`. Every failure the user can meet is one line on stderr, never a
traceback; Ctrl-C, SIGTERM and SIGHUP leave cleanly, with a hint for resuming the conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

from temporalio.client import Client

from app.cli.chat.retries import START_WORKER, FatalChatError
from app.cli.chat.session import ChatSession
from app.cli.chat.terminal import Terminal, quiet_sdk_logs, web_ui_for
from app.core.codec import EncryptionKeyError
from app.core.connection import ConnectionProblem, connect_or_explain
from app.core.names import ORCHESTRATOR

EXIT_GRACE_SECONDS = 0.1
STARTING_MODEL = "named by the orchestrator worker once it has started"


async def run_session(
    client: Client,
    terminal: Terminal,
    *,
    conversation_id: str | None,
    web_ui: str | None,
    resume_command: str,
    workers_starting: bool = False,
    start_worker: str = START_WORKER,
) -> int:
    """Open (or resume) a conversation and chat until the user leaves; returns the exit code.

    `workers_starting`: the caller (the demo) has just started the workers and says when they
    are ready, so the chat neither waits for the model's name nor warns that none polls.
    `start_worker` says how the user gets an orchestrator worker, in the chat's hints.
    """
    session = ChatSession(
        client, terminal, web_ui=web_ui, resume_command=resume_command, start_worker=start_worker
    )
    try:
        if conversation_id:
            await session.attach(conversation_id)
        else:
            await session.start_new()
    except FatalChatError as err:
        terminal.error(str(err))
        return 1
    # The worker says which model answers; the client's own environment may differ.
    if workers_starting:
        session.banner(STARTING_MODEL, resumed=bool(conversation_id))
    else:
        session.banner(await session.worker_model(), resumed=bool(conversation_id))
        await session.warn_if_no_worker()
    try:
        # A resumed conversation may be mid-turn (this client restarted): that turn comes first.
        return await session.run(rejoin=bool(conversation_id))
    except EncryptionKeyError as err:  # an answer this client has no key for
        terminal.error(str(err))
        return 1


async def run_until_interrupted(main: Coroutine[Any, Any, int]) -> int:
    """Run `main`; Ctrl-C, SIGTERM or SIGHUP cancel it once so its cleanup runs; then exit 0."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        if not interrupted:  # a second Ctrl-C must not cut the cleanup short
            interrupted = True
            task.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, interrupt)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
            pass
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if interrupted and (current is None or not current.cancelling()):
            return 0
        raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        # Measured: exiting within milliseconds of a Temporal RPC crashed the interpreter in about
        # one run in five (PyGILState_Release: the SDK's native threads were still finishing).
        await asyncio.sleep(EXIT_GRACE_SECONDS)


def parse_args(argv: list[str] | None, prog: str) -> argparse.Namespace:
    """The chat's command line: only which conversation to resume."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Chat with the durable agent (one message per line)."
    )
    parser.add_argument(
        "--conversation-id", help="resume this conversation instead of starting a new one"
    )
    return parser.parse_args(argv)


async def main(
    argv: list[str] | None = None,
    client: Client | None = None,
    *,
    prog: str = "client.py",
    resume_command: str = "uv run client.py",
) -> int:
    """The chat program: connect, open a conversation, chat; returns the exit code."""
    args = parse_args(argv, prog)
    terminal = Terminal.from_stdio()

    async def chat() -> int:
        if client is None:
            quiet_sdk_logs()
        try:
            connected = client or await connect_or_explain(ORCHESTRATOR.namespace)
        except (ConnectionProblem, EncryptionKeyError) as err:
            terminal.error(str(err))
            return 1
        address = connected.service_client.config.target_host
        return await run_session(
            connected,
            terminal,
            conversation_id=args.conversation_id,
            web_ui=web_ui_for(address),
            resume_command=resume_command,
        )

    return await run_until_interrupted(chat())

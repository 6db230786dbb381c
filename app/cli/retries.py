"""What the chat does when Temporal pushes back: its errors, its retries, and its hints.

A message is sent with one Update id, so retrying a send can never run the turn twice. The errors
a send can survive (the server restarting, the gap between two runs of a continue-as-new, the
server's cap on Updates in flight) are retried with backoff; anything else becomes one line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from app.cli.terminal import Terminal
from app.core.connection import one_line
from app.core.names import ORCHESTRATOR

# How long to keep retrying while the server is unreachable or pushes back, before giving up.
RETRY_LIMIT_SECONDS = 60.0


class ChatError(Exception):
    """A failure of one action, explained in one line; the chat goes on."""


class FatalChatError(ChatError):
    """A failure that ends the chat, explained in one line."""


class ConversationClosed(ChatError):
    """The conversation has ended or no longer exists; /new starts another."""


def over_limit(text: str, limit: int) -> str | None:
    """The error for a message over the workflow's length limit, said before sending it."""
    if len(text) <= limit:
        return None
    return f"Error: the message has {len(text):,} characters; the limit is {limit:,}"


def rpc_problem(err: RPCError, address: str) -> str:
    """An RPC error in one line, naming the server when it is the server that is not answering."""
    if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return f"Temporal at {address} is not answering"
    return one_line(err.message or str(err), 200)


def silent_workflow_hint(problem: str) -> str:
    """Why a running turn has gone quiet, from the error its status query got."""
    if "failed state" in problem:
        # The server says the workflow task keeps failing: the worker's log says why.
        return (
            "the conversation's workflow task is failing on the orchestrator worker (see its "
            "log; has `uv run python -m app.core.setup` run?): the turn carries on once fixed"
        )
    return (
        "the orchestrator worker is not answering: is `uv run orchestrator_worker.py` running? "
        "The turn carries on where it stopped when a worker is back"
    )


def no_worker_hint() -> str:
    """What to do when no orchestrator worker polls: messages wait for one."""
    return (
        f"no orchestrator worker is polling {ORCHESTRATOR.task_queue}: start it with "
        f"`uv run {ORCHESTRATOR.program}` (messages wait until one does)"
    )


def slow_acceptance_hint(worker_polls: bool | None, waited_seconds: float) -> str:
    """Why a message has not been taken up yet, from whether a worker polls."""
    if worker_polls is False:
        return (
            f"your message is waiting: no orchestrator worker is polling "
            f"{ORCHESTRATOR.task_queue} (start it with `uv run {ORCHESTRATOR.program}`)"
        )
    return (
        f"no orchestrator worker has taken your message in {waited_seconds:g} s: is "
        f"`uv run {ORCHESTRATOR.program}` running? (still waiting)"
    )


class Retries:
    """Backoff for the errors a send can meet and survive; anything else is one line and done."""

    def __init__(
        self,
        terminal: Terminal,
        address: str,
        conversation_id: str,
        resume_hint: str,
        describe: Callable[[], Awaitable[WorkflowExecutionDescription]],
    ) -> None:
        self.terminal = terminal
        self.address = address
        self.conversation_id = conversation_id
        self.resume_hint = resume_hint
        self.describe = describe
        self.delay = 0.2
        self.since: float | None = None
        self.told = False

    async def after(self, err: RPCError, *, sending: bool) -> None:
        """Sleep before the next attempt, or raise a `ChatError` saying why there is none."""
        now = time.monotonic()
        self.since = self.since or now
        if err.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            # The server's cap on Updates in flight per workflow, or its rate limit: wait.
            pass
        elif err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            # Between two runs of a continue-as-new the old run is closed and the new one may
            # not be visible yet; only a conversation that is really over is an error.
            if sending:
                await self._fail_unless_running()
            else:
                raise ChatError(one_line(err.message, 200))
        elif err.status in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.UNKNOWN,
            RPCStatusCode.CANCELLED,
        ):
            if not self.told:
                self.told = True
                self.terminal.error(
                    f"lost contact with Temporal at {self.address}: retrying for up to "
                    f"{RETRY_LIMIT_SECONDS:g} s (Ctrl-C to leave)"
                )
        else:
            raise ChatError(rpc_problem(err, self.address))
        if now - self.since > RETRY_LIMIT_SECONDS:
            raise FatalChatError(
                f"gave up after {RETRY_LIMIT_SECONDS:g} s: {rpc_problem(err, self.address)}; "
                f"resume later with `{self.resume_hint}`"
            )
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 2.0)

    async def _fail_unless_running(self) -> None:
        try:
            description = await self.describe()
        except RPCError as describe_err:
            if describe_err.status == RPCStatusCode.NOT_FOUND:
                raise ConversationClosed(
                    f"conversation {self.conversation_id} no longer exists: /new starts another"
                ) from None
            return  # cannot tell: retry
        if description.status != WorkflowExecutionStatus.RUNNING:
            raise ConversationClosed(
                f"conversation {self.conversation_id} has ended: /new starts another"
            )


def reraise_cancellation(err: BaseException) -> None:
    """The SDK turns our own cancellation (Ctrl-C) into a timeout error: undo that."""
    if isinstance(err.__cause__, asyncio.CancelledError):
        raise asyncio.CancelledError()


def as_rpc_error(err: WorkflowUpdateRPCTimeoutOrCancelledError) -> RPCError:
    """The RPC error behind an Update call's timeout, for `Retries`."""
    if isinstance(err.__cause__, RPCError):
        return err.__cause__
    return RPCError(str(err), RPCStatusCode.DEADLINE_EXCEEDED, b"")

"""What the chat does when Temporal pushes back: its errors, its retries, and its hints.

The SDK's client already retries each call that fails with a status a retry can cure
(UNAVAILABLE, RESOURCE_EXHAUSTED, ...: about 10 s of backoff, `temporalio.service.RetryConfig`);
the chat keeps only what it does not do. A message is sent with one Update id, so sending it again
can never run the turn twice: the chat sends again through a server restart longer than the SDK's
budget (saying so), the gap between two runs of a continue-as-new, a run too full to take more
messages (`ConversationRunFull`), a conversation with enough messages waiting
(`ConversationBusy`) and the server's cap on Updates in flight; a worker that is down is a hint,
not an error (messages wait for one). Anything else becomes one line. Waiting for queued messages
or for the next run never gives up: those are answered in time, and Ctrl-C leaves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError, RPCStatusCode

from app.agent.models import AgentResult
from app.agent.sending import is_busy, is_run_full
from app.agent.workflow import AgentWorkflow
from app.core.connection import one_line
from app.core.errors import failure_message
from app.core.names import ORCHESTRATOR

# How long to keep retrying while the server is unreachable or pushes back, before giving up.
RETRY_LIMIT_SECONDS = 60.0
# A full run rejects messages until it has continued as new; say so only if that takes this long.
RUN_FULL_HINT_SECONDS = 10.0
# The workflow's validator says this when the run is full: send again, and the new run takes it.


class ChatError(Exception):
    """A failure of one action, explained in one line; the chat goes on."""


class FatalChatError(ChatError):
    """A failure that ends the chat, explained in one line."""


class RunFull(ChatError):
    """The run refused the message because it is full; the next run will take it."""


class ConversationBusy(RunFull):
    """Enough messages wait for their answers; this one is taken once one is answered."""


class ConversationClosed(ChatError):
    """The conversation has ended or no longer exists; /new starts another."""


def rpc_problem(err: RPCError, address: str) -> str:
    """An RPC error in one line, naming the server when it is the server that is not answering."""
    if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return f"the Temporal server at {address} is not answering"
    return one_line(err.message or str(err), 200)


# How a user of `client.py` gets an orchestrator worker; the demo says what it does instead.
START_WORKER = f"start it with `uv run {ORCHESTRATOR.program}`"


def silent_workflow_hint(problem: str, start_worker: str = START_WORKER) -> str:
    """Why a running turn has gone quiet, from the error its status query got."""
    if "failed state" in problem:
        # The server says the workflow task keeps failing: the worker's log says why.
        return (
            "the conversation's workflow task is failing on the orchestrator worker (see its "
            "log; has `uv run python -m app.core.setup` run?): the turn carries on once fixed"
        )
    return (
        f"the orchestrator worker is not answering ({start_worker}): "
        "the turn carries on where it stopped when a worker is back"
    )


def no_worker_hint(start_worker: str = START_WORKER) -> str:
    """What to do when no orchestrator worker polls: messages wait for one."""
    return (
        f"no orchestrator worker is polling {ORCHESTRATOR.task_queue}: {start_worker} "
        "(messages wait until one does)"
    )


def slow_acceptance_hint(
    worker_polls: bool | None, waited_seconds: float, start_worker: str = START_WORKER
) -> str:
    """Why a message has not been taken up yet, from whether a worker polls."""
    if worker_polls is False:
        return (
            f"your message is waiting: no orchestrator worker is polling "
            f"{ORCHESTRATOR.task_queue} ({start_worker})"
        )
    return (
        f"no orchestrator worker has taken your message in {waited_seconds:g} s "
        f"({start_worker}; still waiting)"
    )


class Retries:
    """Backoff for the errors a send can meet and survive; anything else is one line and done."""

    def __init__(
        self,
        report: Callable[[str], None],
        address: str,
        conversation_id: str,
        describe: Callable[[], Awaitable[WorkflowExecutionDescription]],
    ) -> None:
        self.report = report
        self.address = address
        self.conversation_id = conversation_id
        self.describe = describe
        self.delay = 0.2
        self.since: float | None = None
        self.run_full_since: float | None = None
        self.told = False
        self.told_queue_full = False
        self.told_run_full = False

    async def after(self, err: RPCError, *, sending: bool) -> None:
        """Sleep before the next attempt, or raise a `ChatError` saying why there is none."""
        if is_update_limit(err):
            # The server runs at most 10 Updates per workflow at once: ours waits its turn, which
            # comes when a queued message is answered, however long that takes.
            await self.after_busy()
            return
        now = time.monotonic()
        self.since = self.since or now
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
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
            # The SDK has given up on an unreachable server, or an Update's call timed out or
            # was cut: a server restart can take longer than the SDK's budget.
            if not self.told:
                self.told = True
                self.report(
                    f"lost contact with the Temporal server at {self.address}: retrying for up to "
                    f"{RETRY_LIMIT_SECONDS:g} s (Ctrl-C to leave)"
                )
        else:
            raise ChatError(rpc_problem(err, self.address))
        if now - self.since > RETRY_LIMIT_SECONDS:
            # No resume hint here: leaving the chat says whether there is anything to resume.
            raise FatalChatError(
                f"gave up after {RETRY_LIMIT_SECONDS:g} s: {rpc_problem(err, self.address)}"
            )
        await self._sleep()

    async def after_busy(self) -> None:
        """Enough messages wait for their answers: send again once one of them is answered."""
        if not self.told_queue_full:
            self.told_queue_full = True
            self.report(
                "too many queued messages in this conversation: yours is sent as soon as "
                "one of them is answered (Ctrl-C to leave)"
            )
        await self._sleep()

    async def after_refusal(self, refusal: RunFull) -> None:
        """The workflow refused the message for now (`ConversationBusy` or a full run)."""
        if isinstance(refusal, ConversationBusy):
            await self.after_busy()
        else:
            await self.after_run_full()

    async def after_run_full(self) -> None:
        """The run is full and about to continue as new: wait a little and send again."""
        now = time.monotonic()
        self.run_full_since = self.run_full_since or now
        if now - self.run_full_since > RUN_FULL_HINT_SECONDS and not self.told_run_full:
            self.told_run_full = True
            self.report(
                "the conversation is moving to a new run and has not taken your message yet: "
                "still trying (Ctrl-C to leave)"
            )
        await self._sleep()

    async def _sleep(self) -> None:
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


def is_update_limit(err: RPCError) -> bool:
    """Whether `err` is the server's cap on concurrent in-flight Updates of one workflow."""
    return err.status == RPCStatusCode.RESOURCE_EXHAUSTED and "in-flight updates" in (
        err.message or ""
    )


def rejection(err: WorkflowUpdateFailedError) -> ChatError:
    """The failed Update as the error to raise: `RunFull`, `ConversationBusy` or a one-line
    `ChatError`."""
    if is_busy(err):
        return ConversationBusy(failure_message(err.cause))
    if is_run_full(err):
        return RunFull(failure_message(err.cause))
    return ChatError(failure_message(err.cause))


def reraise_cancellation(err: BaseException) -> None:
    """The SDK turns our own cancellation (Ctrl-C) into a timeout error: undo that."""
    if isinstance(err.__cause__, asyncio.CancelledError):
        raise asyncio.CancelledError()


def as_rpc_error(err: WorkflowUpdateRPCTimeoutOrCancelledError) -> RPCError:
    """The RPC error behind an Update call's timeout, for `Retries`."""
    if isinstance(err.__cause__, RPCError):
        return err.__cause__
    return RPCError(str(err), RPCStatusCode.DEADLINE_EXCEEDED, b"")


async def deliver(
    handle: WorkflowHandle[AgentWorkflow, AgentResult], text: str, update_id: str, retries: Retries
) -> WorkflowUpdateHandle[str]:
    """Send the Update until the workflow accepts it; one update id, so never twice."""
    while True:
        try:
            return await handle.start_update(
                AgentWorkflow.send_message,
                text,
                id=update_id,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
        except WorkflowUpdateFailedError as err:  # the validator said no
            raise rejection(err) from None
        except WorkflowUpdateRPCTimeoutOrCancelledError as err:
            reraise_cancellation(err)
            await retries.after(as_rpc_error(err), sending=True)
        except RPCError as err:
            await retries.after(err, sending=True)


async def await_answer(update: WorkflowUpdateHandle[str], retries: Retries) -> str:
    """The Update's result, waiting through server restarts."""
    while True:
        try:
            return await update.result()
        except WorkflowUpdateFailedError as err:  # the validator said no, or the turn failed
            raise rejection(err) from None
        except WorkflowUpdateRPCTimeoutOrCancelledError as err:
            reraise_cancellation(err)
            await retries.after(as_rpc_error(err), sending=False)
        except RPCError as err:
            await retries.after(err, sending=False)

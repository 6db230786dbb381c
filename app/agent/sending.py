"""Sending a message to a conversation the way a caller must: one Update id, kept across retries.

A run that is full refuses new messages with `ConversationRunFull` while it answers the ones it
accepted and continues as new. Sent again with the same Update id, the message reaches the new run;
and if an earlier attempt was in fact answered, the workflow answers that id from its record
instead of running the turn again. A conversation with enough messages waiting for their turn
refuses more with `ConversationBusy` (each waiting message holds one of the server's Update slots);
it is retried the same way. Any other program that sends messages can do the same.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from app.agent.workflow import CONVERSATION_BUSY, RUN_FULL, AgentWorkflow


def is_run_full(err: BaseException) -> bool:
    """Whether `err` is the refusal of a run that is about to continue as new."""
    return (
        isinstance(err, WorkflowUpdateFailedError)
        and isinstance(err.cause, ApplicationError)
        and err.cause.type == RUN_FULL
    )


def is_busy(err: BaseException) -> bool:
    """Whether `err` refused a message because enough messages already wait for their turn."""
    return (
        isinstance(err, WorkflowUpdateFailedError)
        and isinstance(err.cause, ApplicationError)
        and err.cause.type == CONVERSATION_BUSY
    )


async def send_message(
    handle: WorkflowHandle[Any, Any],
    text: str,
    *,
    update_id: str | None = None,
    patience_seconds: float = 60.0,
) -> str:
    """Send `text` and return the answer, retrying a full run's or a busy conversation's refusal
    with the same Update id.

    `handle` must not be pinned to a run (`run_id=None`, as `start_workflow` and
    `get_workflow_handle(id)` return it), so that a retry reaches the newest run.
    """
    update_id = update_id or str(uuid.uuid4())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience_seconds
    delay = 0.05
    while True:
        try:
            return await handle.execute_update(AgentWorkflow.send_message, text, id=update_id)
        except WorkflowUpdateFailedError as err:
            if not (is_run_full(err) or is_busy(err)) or loop.time() + delay > deadline:
                raise
        # The old run is answering its queue, the new one starts right after; or the queue of
        # waiting messages is full and shortens with every answer.
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)

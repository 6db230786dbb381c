"""Looking a conversation up on the server: open, ended, gone, or not known because it is down.

The chat asks before attaching to a conversation (`uv run demo --conversation-id` asks before
it starts any worker) and again when the user leaves, so that "resume it with ..." is printed
only for a conversation the server really keeps. A dev server without a database file forgets
everything when it stops; a server that does not answer cannot say, and then the chat says so.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from app.core.connection import one_line

LOOKUP_TIMEOUT_SECONDS = 3.0
# The statuses an RPC gets when the server is down or restarting, rather than answering.
UNREACHABLE = (
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.UNKNOWN,
    RPCStatusCode.CANCELLED,
)


class State(enum.Enum):
    """What the server says about a conversation."""

    OPEN = "open"
    ENDED = "ended"
    MISSING = "missing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Lookup:
    """The answer about one conversation: its state and, for ENDED or UNKNOWN, a detail."""

    conversation_id: str
    address: str
    state: State
    detail: str = ""


def is_unreachable(err: BaseException) -> bool:
    """Whether `err` says the server is not answering (rather than answering no)."""
    return isinstance(err, RPCError) and err.status in UNREACHABLE


async def server_answers(client: Client, timeout: float = 1.0) -> bool:
    """Whether the server answers at all (a query can also time out for want of a worker)."""
    try:
        await client.workflow_service.get_system_info(
            GetSystemInfoRequest(), timeout=timedelta(seconds=timeout)
        )
    except RPCError as err:
        return not is_unreachable(err)
    return True


async def look_up(
    client: Client, conversation_id: str, timeout: float = LOOKUP_TIMEOUT_SECONDS
) -> Lookup:
    """Ask the server about `conversation_id`; never raises for an RPC failure."""
    address = client.service_client.config.target_host
    handle = client.get_workflow_handle(conversation_id)
    try:
        description = await handle.describe(rpc_timeout=timedelta(seconds=timeout))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return Lookup(conversation_id, address, State.MISSING)
        reason = (
            f"the Temporal server at {address} is not answering"
            if is_unreachable(err)
            else f"the Temporal server at {address} said: {one_line(err.message, 200)}"
        )
        return Lookup(conversation_id, address, State.UNKNOWN, reason)
    if description.status == WorkflowExecutionStatus.RUNNING:
        return Lookup(conversation_id, address, State.OPEN)
    status = description.status.name.lower() if description.status else "closed"
    return Lookup(conversation_id, address, State.ENDED, status)


def attach_problem(lookup: Lookup, namespace: str, new_command: str) -> str | None:
    """Why the chat cannot attach to the conversation, in one line; None when it can."""
    conversation = lookup.conversation_id
    if lookup.state == State.MISSING:
        return (
            f"there is no conversation {conversation} in namespace {namespace} at {lookup.address}"
        )
    if lookup.state == State.ENDED:
        return (
            f"conversation {conversation} has ended ({lookup.detail}); start a new one with "
            f"`{new_command}`"
        )
    if lookup.state == State.UNKNOWN:
        return f"cannot look up conversation {conversation}: {lookup.detail}"
    return None


def leaving_line(lookup: Lookup, resume_command: str) -> str:
    """What the user reads on leaving: how to resume, or why there is nothing to resume."""
    conversation, address = lookup.conversation_id, lookup.address
    resume = f"{resume_command} --conversation-id {conversation}"
    if lookup.state == State.OPEN:
        return f"Conversation {conversation} stays open: resume it with `{resume}`."
    if lookup.state == State.ENDED:
        return f"Conversation {conversation} has ended ({lookup.detail}): nothing to resume."
    if lookup.state == State.MISSING:
        return (
            f"Conversation {conversation} is gone: the Temporal server at {address} no longer "
            "has it (a dev server without a database file forgets everything when it stops)."
        )
    return (
        f"Cannot tell whether conversation {conversation} is still open: {lookup.detail}. If "
        f"the server kept it, resume it once the server is back with `{resume}`."
    )

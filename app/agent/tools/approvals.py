"""A person says yes before the agent writes: pending tool calls, decisions, and the durable wait.

A tool whose catalog entry says `requires_approval` does not run when the LLM asks for it. The
workflow records the call as pending and waits, durably and at no cost, for a `ToolDecision` (the
Update `decide_tool_call`, from the chat, a second client or the `temporal` CLI) or for the
timeout, which counts as a denial. A denial becomes the tool result the LLM reads, so it can tell
the user what was not done. `Approvals` is the workflow's state for this: it is deterministic
(times come from `workflow.now()`), its checks back the Update's validator, and it keeps the
pending calls visible to the `get_pending_approvals` query, the status line and the Web UI's
current details. The models and `describe_call` are shared with the chat client.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ApplicationError

from app.agent.models import AgentStatus, ToolCall

NOTE_LIMIT = 1_000
DENIED = "Not run: the user denied this call"
_BARE_VALUE = re.compile(r"[\w.@/-]{1,40}")


class ToolDecision(BaseModel):
    """A person's decision on one pending tool call: the input of the `decide_tool_call` Update."""

    call_id: str
    approve: bool
    note: str = ""
    # What the person saw: the workflow's approval id and `call_digest` of the call. Defaults keep
    # decisions recorded before these fields existed readable on replay.
    approval_id: str = ""
    digest: str = ""


class ToolDecisionResult(BaseModel):
    """What `decide_tool_call` recorded."""

    call_id: str
    tool: str
    approved: bool


class PendingApproval(BaseModel):
    """A tool call waiting for a person's decision."""

    call_id: str
    tool: str
    arguments: dict[str, Any] = Field(description="The validated arguments the call will run with.")
    approval_id: str = ""
    digest: str = ""
    asked_at: datetime
    expires_at: datetime = Field(description="When the call counts as denied without a decision.")


class PendingApprovals(BaseModel):
    """The output of the `get_pending_approvals` query, oldest call first."""

    calls: list[PendingApproval] = Field(default_factory=list)


def call_digest(tool: str, arguments: dict[str, Any]) -> str:
    """A short hash of a tool call, so a decision can name exactly the call it was shown."""
    canonical = json.dumps([tool, arguments], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def describe_call(tool: str, arguments: dict[str, Any], limit: int = 200) -> str:
    """`tool(name=value, ...)` in one line of at most `limit` characters."""
    parts = []
    for name, value in arguments.items():
        bare = isinstance(value, str) and _BARE_VALUE.fullmatch(value)
        parts.append(f"{name}={value if bare else json.dumps(value, ensure_ascii=False)}")
    text = f"{tool}({', '.join(parts)})"
    if len(text) <= limit:
        return text
    # Cut after a whole argument when one fits, so the reader never sees half a value as whole.
    kept = f"{tool}("
    for part in parts:
        if len(kept) + len(part) + len(", ...)") > limit:
            break
        kept += part + ", "
    return (kept + "...)") if kept.endswith(", ") else text[: limit - 4] + "...)"


def spoken_duration(seconds: float) -> str:
    """`seconds` as people say it: "45 seconds", "10 minutes", "2 hours"."""
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}" + ("s" if count != 1 else "")
    return f"{seconds:g} second" + ("s" if seconds != 1 else "")


def denial(decision: ToolDecision) -> str:
    """The tool result the LLM reads for a denied call."""
    note = " ".join(decision.note.split())
    return f"{DENIED}: {note}" if note else f"{DENIED}."


def timed_out(timeout: timedelta) -> str:
    """The tool result the LLM reads when nobody decided in time."""
    waited = spoken_duration(timeout.total_seconds())
    return f"Not run: nobody approved this call within {waited}, so it counts as denied."


class Approvals:
    """The workflow's pending tool calls and the decisions made on them, for one run."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingApproval] = {}
        # Decisions made, until the waiting call picks them up.
        self._decisions: dict[str, ToolDecision] = {}
        # How each call of this run ended: "approved", "denied" or "timed out", for clear errors.
        self._outcomes: dict[str, str] = {}

    @property
    def pending(self) -> list[PendingApproval]:
        """The calls waiting for a decision, oldest first."""
        return list(self._pending.values())

    async def refusal(
        self, call: ToolCall, arguments: dict[str, Any], timeout: timedelta
    ) -> str | None:
        """Wait for a decision on `call`: None when approved, else the result the LLM reads."""
        # Models reuse call ids across turns, and could within a step: keep every key unique.
        call_id, n = call.id, 1
        while call_id in self._pending or call_id in self._decisions:
            n += 1
            call_id = f"{call.id}-{n}"
        self._outcomes.pop(call_id, None)
        now = workflow.now()
        self._pending[call_id] = PendingApproval(
            call_id=call_id,
            tool=call.name,
            arguments=arguments,
            asked_at=now,
            expires_at=now + timeout,
        )
        self._publish()
        workflow.logger.info("Tool call %s (%s) waits for approval", call_id, call.name)
        # No `finally` here: when the worker evicts the workflow, the coroutine is closed inside
        # this wait, and workflow calls are no longer allowed.
        try:
            await workflow.wait_condition(lambda: call_id in self._decisions, timeout=timeout)
        except TimeoutError:
            pass
        self._pending.pop(call_id, None)
        self._publish()
        decision = self._decisions.pop(call_id, None)
        if decision is None:
            self._outcomes[call_id] = "timed out"
            workflow.logger.info("Tool call %s timed out waiting for approval", call_id)
            return timed_out(timeout)
        return None if decision.approve else denial(decision)

    def check(self, decision: ToolDecision) -> None:
        """Raise `InvalidToolDecision`, saying why, if `decision` cannot apply."""
        problem = self._problem(decision)
        if problem is not None:
            raise ApplicationError(problem, type="InvalidToolDecision", non_retryable=True)

    def _problem(self, decision: ToolDecision) -> str | None:
        if len(decision.note) > NOTE_LIMIT:
            return f"the note has {len(decision.note):,} characters; the limit is {NOTE_LIMIT:,}"
        if decision.call_id in self._decisions:
            outcome = "approved" if self._decisions[decision.call_id].approve else "denied"
            return f"tool call {decision.call_id!r} was already {outcome}"
        if decision.call_id in self._pending:
            return None
        if (ended := self._outcomes.get(decision.call_id)) is not None:
            already = "timed out, which counts as denied" if ended == "timed out" else ended
            return f"tool call {decision.call_id!r} was already {already}"
        waiting = ", ".join(repr(call_id) for call_id in self._pending) or "none"
        return f"no tool call {decision.call_id!r} is waiting for approval (waiting: {waiting})"

    def decide(self, decision: ToolDecision) -> ToolDecisionResult:
        """Record `decision`; the waiting call wakes up and runs or reports the denial."""
        # Checked again: two decisions validated in the same workflow task both passed.
        self.check(decision)
        pending = self._pending[decision.call_id]
        self._decisions[decision.call_id] = decision
        self._outcomes[decision.call_id] = "approved" if decision.approve else "denied"
        workflow.logger.info(
            "Tool call %s was %s", decision.call_id, self._outcomes[decision.call_id]
        )
        return ToolDecisionResult(
            call_id=decision.call_id, tool=pending.tool, approved=decision.approve
        )

    def shown_in(self, status: AgentStatus) -> AgentStatus:
        """`status`, saying "waiting for your approval" while a call waits."""
        waiting = [p for p in self._pending.values() if p.call_id not in self._decisions]
        if not waiting:
            return status
        if len(waiting) == 1:
            detail = "waiting for your approval: " + describe_call(
                waiting[0].tool, waiting[0].arguments, 80
            )
        else:
            detail = f"waiting for your approval of {len(waiting)} tool calls"
        return status.model_copy(update={"state": "waiting_for_approval", "detail": detail})

    def _publish(self) -> None:
        """Show the pending calls, and how to decide them, in the Web UI's current details."""
        if not self._pending:
            workflow.set_current_details("")
            return
        workflow_id = workflow.info().workflow_id
        lines = [f"**Waiting for approval** ({len(self._pending)} tool call(s))", ""]
        for pending in self._pending.values():
            decision = json.dumps({"call_id": pending.call_id, "approve": True})
            lines += [
                f"- `{describe_call(pending.tool, pending.arguments)}`",
                f"  - call id `{pending.call_id}`, asked {pending.asked_at:%Y-%m-%d %H:%M:%S} "
                f"UTC; denied at {pending.expires_at:%H:%M:%S} UTC unless approved",
                f"  - approve: `temporal workflow update execute --workflow-id {workflow_id} "
                f"--name decide_tool_call --input '{decision}'` (or `/approve {pending.call_id}` "
                "in the chat; `approve` false denies, with an optional `note`)",
            ]
        workflow.set_current_details("\n".join(lines))

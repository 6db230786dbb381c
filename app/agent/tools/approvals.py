"""A person says yes before the agent writes: pending tool calls, decisions, and the durable wait.

A tool whose catalog entry says `requires_approval` does not run when the LLM asks for it. The
workflow records the call as pending and waits, durably and at no cost, for a `ToolDecision` (the
Update `decide_tool_call`, from the chat, a second client or the `temporal` CLI) or for the
timeout, which counts as a denial. A denial becomes the tool result the LLM reads, so it can tell
the user what was not done. `Approvals` is the workflow's state for this: it is deterministic
(times come from `workflow.now()`), its checks back the Update's validator, and it keeps the
pending calls visible to the `get_pending_approvals` query, the status line and the Web UI's
current details. The models and `describe_call` are shared with the chat client.

Since the patch `approval-ids`, every wait has an id the workflow makes (`turn.step.index`, unique
for the conversation's life because the turn counter is carried across continue-as-new) and a
digest of the tool and its arguments (`call_digest`). A decision must name both, so a late or
repeated decision can only ever approve the very call it was shown; waits recorded before the patch
keep the old rule (the model's call id) so their histories replay.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ApplicationError

from app.agent.metrics import count_approval_decision, count_approval_request
from app.agent.models import AgentStatus, ToolCall

if TYPE_CHECKING:
    from app.agent.stream.workflow_side import ConversationEvents

# The patch under which approvals got workflow-made ids and digests (see the module docstring).
APPROVAL_IDS_PATCH = "approval-ids"

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


# How much of the first message the Web UI's current details show, in characters.
FIRST_MESSAGE_SHOWN = 120


def call_digest(tool: str, arguments: dict[str, Any]) -> str:
    """A short hash of a tool call, so a decision can name exactly the call it was shown."""
    canonical = json.dumps([tool, arguments], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def approval_id(turn: int, step: int, index: int) -> str:
    """The id of a wait: the conversation's turn number, the step in it, the call in the step."""
    return f"{turn}.{step}.{index}"


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

    def __init__(self, events: ConversationEvents | None = None) -> None:
        # Keyed by approval id (by the model's call id for waits from before the patch).
        self._pending: dict[str, PendingApproval] = {}
        # Decisions made, until the waiting call picks them up.
        self._decisions: dict[str, ToolDecision] = {}
        # How each call of this run ended: "approved", "denied" or "timed out", for clear errors.
        self._outcomes: dict[str, str] = {}
        # The model's call id -> the approval id it last waited under, for clear errors.
        self._by_call_id: dict[str, str] = {}
        self._events = events
        # What the Web UI's current details say of the conversation, above any waiting calls.
        self._about: list[str] = []

    @property
    def pending(self) -> list[PendingApproval]:
        """The calls waiting for a decision, oldest first."""
        return list(self._pending.values())

    async def refusal(
        self,
        call: ToolCall,
        arguments: dict[str, Any],
        timeout: timedelta,
        approval_id: str = "",
    ) -> str | None:
        """Wait for a decision on `call`: None when approved, else the result the LLM reads.

        `approval_id` is the workflow's id for this wait; "" keeps the rule of waits recorded
        before the patch `approval-ids` (keyed by the model's call id, decided by it alone).
        """
        call_id, key = call.id, approval_id
        if not approval_id:
            # Models reuse call ids across turns, and could within a step: keep every key unique.
            n = 1
            while call_id in self._pending or call_id in self._decisions:
                n += 1
                call_id = f"{call.id}-{n}"
            key = call_id
        self._outcomes.pop(key, None)
        self._by_call_id[call.id] = key
        now = workflow.now()
        digest = call_digest(call.name, arguments) if approval_id else ""
        self._pending[key] = PendingApproval(
            call_id=call_id,
            tool=call.name,
            arguments=arguments,
            approval_id=approval_id,
            digest=digest,
            asked_at=now,
            expires_at=now + timeout,
        )
        self._publish()
        count_approval_request(call.name)
        if approval_id and self._events is not None:
            self._events.approval_requested(approval_id, call.name, arguments, digest)
        workflow.logger.info("Tool call %s (%s) waits for approval", key, call.name)
        # No `finally` here: when the worker evicts the workflow, the coroutine is closed inside
        # this wait, and workflow calls are no longer allowed.
        try:
            await workflow.wait_condition(lambda: key in self._decisions, timeout=timeout)
        except TimeoutError:
            pass
        self._pending.pop(key, None)
        self._publish()
        decision = self._decisions.pop(key, None)
        if decision is None:
            self._outcomes[key] = "timed out"
            workflow.logger.info("Tool call %s timed out waiting for approval", key)
        outcome: Literal["approved", "denied", "timed_out"] = (
            "timed_out" if decision is None else "approved" if decision.approve else "denied"
        )
        count_approval_decision(call.name, outcome)
        if approval_id and self._events is not None:
            self._events.approval_decided(approval_id, outcome)
        if decision is None:
            return timed_out(timeout)
        return None if decision.approve else denial(decision)

    def check(self, decision: ToolDecision) -> None:
        """Raise `InvalidToolDecision`, saying why, if `decision` cannot apply."""
        problem = self._problem(decision)
        if problem is not None:
            raise ApplicationError(problem, type="InvalidToolDecision", non_retryable=True)

    def _key(self, decision: ToolDecision) -> str:
        """The wait a decision names: its approval id, or (old style) the model's call id."""
        return decision.approval_id or self._by_call_id.get(decision.call_id, decision.call_id)

    def _problem(self, decision: ToolDecision) -> str | None:
        if len(decision.note) > NOTE_LIMIT:
            return f"the note has {len(decision.note):,} characters; the limit is {NOTE_LIMIT:,}"
        key = self._key(decision)
        name = f"approval {key!r}" if decision.approval_id else f"tool call {decision.call_id!r}"
        if key in self._decisions:
            outcome = "approved" if self._decisions[key].approve else "denied"
            return f"{name} was already {outcome}"
        if (pending := self._pending.get(key)) is not None:
            return self._mismatch(decision, pending)
        if (ended := self._outcomes.get(key)) is not None:
            already = "timed out, which counts as denied" if ended == "timed out" else ended
            return f"{name} was already {already}"
        waiting = ", ".join(repr(key) for key in self._pending) or "none"
        return f"no {name} is waiting for approval (waiting: {waiting})"

    @staticmethod
    def _mismatch(decision: ToolDecision, pending: PendingApproval) -> str | None:
        """Why `decision` does not name exactly the call that waits, or None if it does."""
        if not pending.approval_id:
            return None  # a wait from before the patch: decided by the call id, as then
        if not decision.approval_id:
            return (
                f"tool call {decision.call_id!r} now waits as approval {pending.approval_id!r}: "
                "a decision must name its approval_id and digest (get_pending_approvals shows "
                "them)"
            )
        if decision.digest != pending.digest:
            shown = describe_call(pending.tool, pending.arguments)
            return (
                f"approval {pending.approval_id!r} is for {shown}"
                f" (digest {pending.digest}); the decision names digest {decision.digest!r}, "
                "so it was made for another call: nothing was decided"
            )
        return None

    def decide(self, decision: ToolDecision) -> ToolDecisionResult:
        """Record `decision`; the waiting call wakes up and runs or reports the denial."""
        # Checked again: two decisions validated in the same workflow task both passed.
        self.check(decision)
        key = self._key(decision)
        pending = self._pending[key]
        self._decisions[key] = decision
        self._outcomes[key] = "approved" if decision.approve else "denied"
        workflow.logger.info("Tool call %s was %s", key, self._outcomes[key])
        return ToolDecisionResult(
            call_id=pending.call_id, tool=pending.tool, approved=decision.approve
        )

    def shown_in(self, status: AgentStatus) -> AgentStatus:
        """`status`, saying "waiting for your approval" while a call waits."""
        waiting = [key for key in self._pending if key not in self._decisions]
        waiting_calls = [self._pending[key] for key in waiting]
        if not waiting:
            return status
        if len(waiting_calls) == 1:
            detail = "waiting for your approval: " + describe_call(
                waiting_calls[0].tool, waiting_calls[0].arguments, 80
            )
        else:
            detail = f"waiting for your approval of {len(waiting)} tool calls"
        return status.model_copy(update={"state": "waiting_for_approval", "detail": detail})

    def show_conversation(self, first_message: str, model: str | None) -> None:
        """Name the conversation's first message and the model that answered last in the Web
        UI's current details (workflow metadata, not history: replay is unaffected)."""
        shown = " ".join(first_message.split()).replace("`", "'")
        if len(shown) > FIRST_MESSAGE_SHOWN:
            shown = shown[: FIRST_MESSAGE_SHOWN - 1] + "…"
        self._about = [f"**First message**: `{shown}`", f"**Model**: `{model or 'not yet known'}`"]
        self._publish()

    def _publish(self) -> None:
        """Show the conversation, the pending calls and how to decide them, in the Web UI's
        current details."""
        if not self._pending:
            workflow.set_current_details("\n\n".join(self._about))
            return
        workflow_id = workflow.info().workflow_id
        lines = [*self._about, ""] if self._about else []
        lines += [f"**Waiting for approval** ({len(self._pending)} tool call(s))", ""]
        for pending in self._pending.values():
            fields: dict[str, Any] = {"call_id": pending.call_id, "approve": True}
            if pending.approval_id:
                fields |= {"approval_id": pending.approval_id, "digest": pending.digest}
            decision = json.dumps(fields)
            lines += [
                f"- `{describe_call(pending.tool, pending.arguments)}`",
                f"  - call id `{pending.call_id}`, asked {pending.asked_at:%Y-%m-%d %H:%M:%S} "
                f"UTC; denied at {pending.expires_at:%H:%M:%S} UTC unless approved",
                f"  - approve: `temporal workflow update execute --workflow-id {workflow_id} "
                f"--name decide_tool_call --input '{decision}'` (or `/approve {pending.call_id}` "
                "in the chat; `approve` false denies, with an optional `note`)",
            ]
        workflow.set_current_details("\n".join(lines))

"""The events a conversation publishes on its Workflow Stream while a turn runs, for live clients.

The workflow publishes the turn's progress (started, planning step N, each tool call started and
finished, the answer); `plan_next_action` publishes the answer's text as it arrives and, when an
attempt fails, that it failed and that its partial text must be dropped. Every event names its
turn (the `send_message` Update id), so a client shows only its own turn and can resume a turn
from any offset. They are all pydantic models in one discriminated union, `AgentEvent`, on one
topic, so the log keeps the order in which things happened.
"""

from __future__ import annotations

from typing import Annotated, Literal, cast

from pydantic import BaseModel, Field

# The one topic of the conversation's stream.
EVENTS_TOPIC = "agent-events"


class TurnStarted(BaseModel):
    """The workflow took up a message (queued messages start in arrival order)."""

    kind: Literal["turn_started"] = "turn_started"
    turn_id: str
    turn: int


class PlanningStep(BaseModel):
    """The workflow asks the LLM for step `step` of the turn."""

    kind: Literal["planning_step"] = "planning_step"
    turn_id: str
    step: int


class TextDelta(BaseModel):
    """A piece of the answer's text, as the model wrote it (several tokens per batch)."""

    kind: Literal["text_delta"] = "text_delta"
    turn_id: str
    text: str


class DropPartialText(BaseModel):
    """The text shown since the last planning step belongs to a failed attempt: remove it."""

    kind: Literal["drop_partial_text"] = "drop_partial_text"
    turn_id: str
    attempt: int


class LLMAttemptFailed(BaseModel):
    """One attempt of the LLM call failed; `will_retry` says whether Temporal tries again."""

    kind: Literal["llm_attempt_failed"] = "llm_attempt_failed"
    turn_id: str
    attempt: int
    error: str
    will_retry: bool


class ToolCallStarted(BaseModel):
    """A tool call began; `endpoint` is the Nexus endpoint of a remote tool, None for local."""

    kind: Literal["tool_call_started"] = "tool_call_started"
    turn_id: str
    call_id: str
    tool: str
    arguments: str
    endpoint: str | None = None


class ToolCallFinished(BaseModel):
    """A tool call ended, well or not, after `duration_ms` (workflow time)."""

    kind: Literal["tool_call_finished"] = "tool_call_finished"
    turn_id: str
    call_id: str
    tool: str
    ok: bool
    duration_ms: int
    error: str | None = None


class ApprovalRequested(BaseModel):
    """A tool call waits for a person's decision; a decision must name `approval_id` and
    `digest` (a hash of the tool and its arguments), so it can only approve what was shown."""

    kind: Literal["approval_requested"] = "approval_requested"
    turn_id: str
    approval_id: str
    tool: str
    arguments: str
    digest: str


class ApprovalDecided(BaseModel):
    """The wait for `approval_id` ended: approved, denied, or timed out with nobody deciding."""

    kind: Literal["approval_decided"] = "approval_decided"
    turn_id: str
    approval_id: str
    outcome: Literal["approved", "denied", "timed_out"]


class TurnAnswered(BaseModel):
    """The turn's answer (also the Update's result) and the model that wrote it."""

    kind: Literal["turn_answered"] = "turn_answered"
    turn_id: str
    answer: str
    model: str | None = None


AgentEvent = Annotated[
    TurnStarted
    | PlanningStep
    | TextDelta
    | DropPartialText
    | LLMAttemptFailed
    | ToolCallStarted
    | ToolCallFinished
    | ApprovalRequested
    | ApprovalDecided
    | TurnAnswered,
    Field(discriminator="kind"),
]

# The topic's value type for `topic(type=...)` and `subscribe(result_type=...)`: the union, which
# type checkers do not accept as a `type` without help.
EVENT_TYPE = cast("type[AgentEvent]", AgentEvent)

"""The agent loop's own metrics and its one log line per turn, recorded from workflow code.

Everything here goes through `workflow.metric_meter()` and `workflow.logger`, which record nothing
while a workflow replays, so a replayed turn is never counted twice. The worker serves the
metrics with the SDK's (see `app/core/telemetry.py`): `agent_turns_total`,
`agent_turn_duration_seconds`, `agent_tool_calls_total{tool,outcome}`,
`agent_approval_requests_total{tool}` and `agent_approval_decisions_total{tool,decision}`. The
LLM's metrics are recorded in the activity (`app/agent/llm/telemetry.py`). Nothing here writes to
the event history, so it changes no command and old histories replay unchanged.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

from app.agent.llm.usage import TurnUsage
from app.core.telemetry import cached_instrument, current_trace_id

# The prefixes of the tool results the runner and the approvals write instead of running a call.
_ERROR_PREFIX = "Error"
_NOT_RUN_PREFIX = "Not run"
TOOL_CALLS = "Tool calls by tool and outcome"
APPROVAL_REQUESTS = "Tool calls that asked a person for approval"
APPROVAL_DECISIONS = "Approval waits by how they ended"


def _metric(kind: str, name: str, description: str, **labels: str) -> Any:
    """The workflow meter's instrument `name` with `labels` bound, made once per worker queue."""
    info = workflow.info()
    scope = (info.namespace, info.task_queue, info.workflow_type)
    key = (*scope, kind, name, tuple(sorted(labels.items())))

    def create() -> Any:
        meter = workflow.metric_meter()
        made = getattr(meter, f"create_{kind}")(name, description)
        return made.with_additional_attributes(labels) if labels else made

    return cached_instrument(key, create)


def tool_outcome(content: str) -> str:
    """A tool result as a metric label: `ok`, `error`, or `not_run` (denied or refused)."""
    if content.startswith(_ERROR_PREFIX):
        return "error"
    if content.startswith(_NOT_RUN_PREFIX):
        return "not_run"
    return "ok"


def count_tool_call(tool: str, content: str) -> None:
    """One tool call finished with result `content`."""
    outcome = tool_outcome(content)
    _metric("counter", "agent_tool_calls", TOOL_CALLS, tool=tool, outcome=outcome).add(1)


def count_approval_request(tool: str) -> None:
    """A tool call now waits for a person's decision."""
    _metric("counter", "agent_approval_requests", APPROVAL_REQUESTS, tool=tool).add(1)


def count_approval_decision(tool: str, decision: str) -> None:
    """How the wait ended: `approved`, `denied`, or `timed_out` (which also denies)."""
    _metric(
        "counter", "agent_approval_decisions", APPROVAL_DECISIONS, tool=tool, decision=decision
    ).add(1)


def record_turn(turn: TurnUsage, steps: int, tools: list[str]) -> None:
    """A turn was answered: count it, time it, and log its one line."""
    _metric("counter", "agent_turns", "Turns answered").add(1)
    _metric(
        "histogram_timedelta",
        "agent_turn_duration",
        "Workflow time from a turn's start to its answer",
    ).record(timedelta(seconds=turn.seconds))
    fields = {
        "conversation_id": workflow.info().workflow_id,
        "turn": turn.turn,
        "steps": steps,
        "tools": ",".join(tools),
        "tokens": turn.usage.total_tokens,
        "cost_usd": round(turn.usage.cost_usd, 8),
        "seconds": turn.seconds,
        "trace_id": current_trace_id(),
    }
    text = " ".join(
        f"{name}={'-' if value in (None, '') else value}" for name, value in fields.items()
    )
    # `extra` makes them the JSON record's own fields (LOG_FORMAT=json); the text is for people.
    workflow.logger.info("Turn answered: %s", text, extra=fields)

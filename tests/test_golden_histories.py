"""Golden histories: today's workflow code must replay every conversation recorded before it.

`tests/histories/*.json` are event histories of real conversations, one per kind of turn, recorded
by `uv run python -m tests.histories.record`. A conversation stays open for days, so a worker
running new code will replay histories written by old code: a change that does not replay them
would fail every running conversation's next workflow task. These tests replay each one with
today's `AgentWorkflow` (and the IT team's `JiraMetricsWorkflow`), show that an unguarded change
to the loop is caught, and walk the patch path of the README's "Changing the agent loop safely":
a change behind `workflow.patched` replays the old histories and takes the new branch in new
runs, and its later `deprecate_patch` clean-up replays those new runs.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from app.agent.models import AgentConfig, AgentInput
from app.agent.tools.activity import execute_tool
from app.agent.tools.mcp_config import MCPConfig, servers_activity
from app.agent.tools.mcp_toolbox import MCP_PATCH
from app.agent.workflow import AgentWorkflow
from app.core.names import AGENT_WORKFLOW_NAME
from app.it.handler import JiraMetricsWorkflow
from tests.changed_loops import (
    PATCH_ID,
    DeprecatedScreening,
    PatchedScreening,
    UnguardedScreening,
    screen_message,
)
from tests.doubles import ScriptedLLM, history, says, send
from tests.histories.record import HISTORIES, RECORDINGS

# The newest recording at the top, and older generations kept in folders (one per patch that
# is still live, see the README) below it: all of them must replay.
GOLDEN = sorted(HISTORIES.rglob("*.json"))
NEWEST = sorted(HISTORIES.glob("*.json"))


no_mcp_servers = servers_activity(MCPConfig())


def load(path: Path) -> WorkflowHistory:
    """A recorded history; its workflow id is in its first event."""
    events = json.loads(path.read_text())
    started = events["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started["workflowId"], events)


def workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


def agent_histories() -> list[Path]:
    return [path for path in GOLDEN if workflow_type(load(path)) == AGENT_WORKFLOW_NAME]


async def replay(history: WorkflowHistory, *workflows: type) -> None:
    """Replay `history` with `workflows`; raises the replay's failure, if any."""
    replayer = Replayer(workflows=list(workflows), data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


def test_every_kind_of_turn_has_a_golden_history():
    kinds = {path.name.split(".")[0] for path in NEWEST}
    assert {recording.kind for recording in RECORDINGS} <= kinds
    assert kinds - {recording.kind for recording in RECORDINGS} == {"jira_metrics_handler"}
    # Both runs of the conversation that continued as new.
    assert {"continue_as_new.run-1.json", "continue_as_new.run-2.json"} <= {p.name for p in NEWEST}
    assert len(NEWEST) >= 8


def history_id(path: Path) -> str:
    return str(path.relative_to(HISTORIES).with_suffix(""))


@pytest.mark.parametrize("path", GOLDEN, ids=history_id)
async def test_golden_history_replays_with_todays_code(path: Path):
    await replay(load(path), AgentWorkflow, JiraMetricsWorkflow)


@pytest.mark.parametrize("path", agent_histories(), ids=history_id)
async def test_an_unguarded_change_to_the_loop_fails_replay(path: Path):
    with pytest.raises(NondeterminismError) as caught:
        await replay(load(path), UnguardedScreening)
    # The old history has another command where the changed loop schedules screen_message.
    assert "[TMPRL1100] Nondeterminism error" in str(caught.value)
    assert "'screen_message'" in str(caught.value)


@pytest.mark.parametrize("path", agent_histories(), ids=history_id)
async def test_a_patched_change_replays_every_golden_history(path: Path):
    await replay(load(path), PatchedScreening)


async def test_a_patched_change_takes_the_new_branch_in_new_runs(
    time_skipping_env: WorkflowEnvironment,
):
    client = time_skipping_env.client
    llm = ScriptedLLM(lambda messages: says(f"answer to {messages[-1].content}"))
    task_queue = f"patched-{uuid.uuid4()}"
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[PatchedScreening],
        # `mcp_servers` as every orchestrator worker has it (no servers): the replays below
        # read its result from the history, as they read every activity's.
        activities=[llm.plan_next_action, execute_tool, screen_message, no_mcp_servers],
    )
    async with worker:
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput(config=AgentConfig()),
            id=f"patched-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        assert await send(handle, "hello") == "answer to hello"
        refused = await send(handle, "something forbidden")
        messages = await history(handle)
        await handle.signal(AgentWorkflow.end_conversation)
        await handle.result()
        new_run = await handle.fetch_history()

    assert refused == "I can't help with that: it asks for something forbidden."
    # The refused message never reached the LLM, and is in the conversation once.
    assert [i.messages[-1].content for i in llm.inputs] == ["hello"]
    assert [(m.role, m.content) for m in messages] == [
        ("user", "hello"),
        ("assistant", "answer to hello"),
        ("user", "something forbidden"),
        ("assistant", refused),
    ]
    assert scheduled_activities(new_run) == [
        "screen_message",
        "mcp_servers",
        "plan_next_action",
        "screen_message",
    ]
    # MCP_PATCH: every run since MCP tools came lists them (none on this worker).
    assert patch_markers(new_run) == [MCP_PATCH, PATCH_ID]

    # The new run replays with the patched code and with its later clean-up...
    await replay(new_run, PatchedScreening)
    await replay(new_run, DeprecatedScreening)
    # ...but not with the old code: once new runs exist, roll forward, not back.
    with pytest.raises(NondeterminismError):
        await replay(new_run, AgentWorkflow)


@pytest.mark.parametrize("path", agent_histories()[:1], ids=history_id)
async def test_deprecating_the_patch_too_early_breaks_the_old_histories(path: Path):
    with pytest.raises(NondeterminismError):
        await replay(load(path), DeprecatedScreening)


def scheduled_activities(history: WorkflowHistory) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def patch_markers(history: WorkflowHistory) -> list[str]:
    """The patch ids recorded in `history` (the SDK writes one marker per patch per run)."""
    return [
        json.loads(event.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)[
            "id"
        ]
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and event.marker_recorded_event_attributes.marker_name == "core_patch"
    ]

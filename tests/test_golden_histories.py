"""Golden histories: today's workflow code must replay every conversation recorded before it.

`tests/histories/*.json` are event histories of real conversations, one per kind of turn, recorded
by `uv run python -m tests.histories.record`. A conversation stays open for days, so a worker
running new code will replay histories written by old code: a change that does not replay them
would fail every running conversation's next workflow task. These tests replay each one with
today's `AgentWorkflow` (and the IT team's `JiraMetricsWorkflow`) the way the workers run them
(`SandboxedRunner`, the shared data converter, and, for an encrypted copy, the codec with
`AGENT_ENCRYPTION_REQUIRED`), show that an unguarded change
to the loop is caught, and walk the patch path of docs/versioning.md:
a change behind `workflow.patched` replays the old histories and takes the new branch in new
runs, and its later `deprecate_patch` clean-up replays those new runs.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from app.agent.models import AgentConfig, AgentInput
from app.agent.tools.activity import execute_tool
from app.agent.tools.catalog import TOOLS
from app.agent.tools.legacy_contracts import LEGACY_INPUT_MODELS
from app.agent.workflow import AgentWorkflow
from app.core.codec import EncryptionCodec, EncryptionKey, encrypting_data_converter
from app.core.names import AGENT_WORKFLOW_NAME
from app.core.sandbox import SandboxedRunner
from app.it import service as it_service
from app.it.handler import JiraMetricsWorkflow
from app.it.service import CreateJiraIssueInput
from tests.changed_loops import (
    PATCH_ID,
    DeprecatedScreening,
    PatchedScreening,
    UnguardedScreening,
    screen_message,
)
from tests.doubles import ScriptedLLM, history, says, send
from tests.histories.record import HISTORIES, RECORDINGS
from tests.test_encryption_stack import paths_and_payloads

# The newest recording at the top, and older generations kept in folders (one per patch that
# is still live, see docs/versioning.md) below it: all of them must replay.
GOLDEN = sorted(HISTORIES.rglob("*.json"))
NEWEST = sorted(HISTORIES.glob("*.json"))


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
    """Replay `history` with `workflows` as the workers run them (their sandbox, their data
    converter); raises the replay's failure, if any."""
    replayer = Replayer(
        workflows=list(workflows),
        workflow_runner=SandboxedRunner(),
        data_converter=encrypting_data_converter([]),
    )
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


async def encrypted_copy(history: WorkflowHistory, key: EncryptionKey) -> WorkflowHistory:
    """`history` as an encrypted fleet would have written it: every payload the SDK encodes is
    ciphertext; search attributes and the SDK core's bookkeeping (local-activity and patch
    markers) stay plain."""
    codec = EncryptionCodec([key])
    events = []
    for event in history.events:
        copy = type(event)()
        copy.CopyFrom(event)
        for path, payload in paths_and_payloads(copy):
            core_bookkeeping = ("details[data].payloads", "details[patch-data].payloads")
            if "search_attributes" in path or path.endswith(core_bookkeeping):
                continue
            [sealed] = await codec.encode([payload])
            payload.CopyFrom(sealed)
        events.append(copy)
    return WorkflowHistory(history.workflow_id, events)


@pytest.mark.parametrize("path", GOLDEN, ids=history_id)
async def test_golden_history_replays_through_the_codec_when_encrypted(path: Path):
    key = EncryptionKey.generate()
    encrypted = await encrypted_copy(load(path), key)
    replayer = Replayer(
        workflows=[AgentWorkflow, JiraMetricsWorkflow],
        workflow_runner=SandboxedRunner(),
        data_converter=encrypting_data_converter([key], require_encrypted=True),
    )
    await replayer.replay_workflow(encrypted)
    # Replay does read the payloads: without the key it cannot.
    with pytest.raises(Exception, match=f"key id {key.id}"):
        await replay(encrypted, AgentWorkflow, JiraMetricsWorkflow)


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
        activities=[llm.plan_next_action, execute_tool, screen_message],
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
    assert scheduled_activities(new_run) == ["screen_message", "plan_next_action", "screen_message"]
    assert patch_markers(new_run) == [PATCH_ID]

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


class StricterIssueInput(CreateJiraIssueInput):
    """The IT team's contract after a change: summaries of at most 5 characters."""

    summary: str = Field(max_length=5)


def stricter_it_contract(monkeypatch: pytest.MonkeyPatch, where: dict[str, Any], key: str) -> None:
    monkeypatch.setattr(it_service, "CreateJiraIssueInput", StricterIssueInput)
    monkeypatch.setitem(
        TOOLS,
        "create_jira_issue",
        replace(TOOLS["create_jira_issue"], input_model=StricterIssueInput),
    )
    monkeypatch.setitem(where, key, StricterIssueInput)


@pytest.mark.parametrize("path", agent_histories(), ids=history_id)
async def test_an_it_contract_change_does_not_break_replay(
    path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Every recorded summary is longer than 5 characters: the workflow must not care, because it
    # routes by name and the IT handler validates (histories from before: the frozen models).
    stricter_it_contract(monkeypatch, {}, "unused")
    await replay(load(path), AgentWorkflow)


async def test_validating_in_the_workflow_against_a_changed_contract_breaks_replay(
    monkeypatch: pytest.MonkeyPatch,
):
    # What the guard prevents: the old rule (validate in the workflow) with the team's new model.
    stricter_it_contract(monkeypatch, LEGACY_INPUT_MODELS, "create_jira_issue")
    with pytest.raises(NondeterminismError):
        await replay(load(HISTORIES / "approval_approved.json"), AgentWorkflow)

"""Conversations that never outgrow Temporal: bounded history per turn, continue-as-new, big inputs.

The long conversation runs on the real dev server with the real `plan_next_action` activity and
the offline model, through three continue-as-new, and prints the figures it asserts on (run
pytest with `-s` to see them).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from app.agent.models import AgentConfig, AgentInput
from app.agent.sending import send_message
from app.agent.tools.catalog import TOOLS
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from tests.doubles import real_agent


async def history_bytes(client: Client, workflow_id: str) -> tuple[str, int]:
    """The current run's id and the total size of its event history in bytes."""
    handle = client.get_workflow_handle(workflow_id)
    run_id = (await handle.describe()).run_id
    history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    return run_id, sum(event.ByteSize() for event in history.events)


@pytest.mark.timeout(300)
async def test_a_long_conversation_keeps_history_per_turn_flat_across_continue_as_new(
    dev_env: WorkflowEnvironment,
):
    client = dev_env.client
    task_queue = f"long-{uuid.uuid4()}"
    # Three full runs and a fourth. The planner's window (40 messages) is full after ten turns and
    # moves to the next run with everything else a run carries, so the fourth run's turns show
    # whether anything carried grows per turn. (1,000 turns of 200 per run showed the same.)
    per_run = 25
    turns = 3 * per_run + 10
    async with orchestrator_worker(client, task_queue=task_queue, max_concurrent_activities=4):
        handle: WorkflowHandle[AgentWorkflow, object] = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput(config=AgentConfig(max_turns_per_run=per_run)),
            id=f"long-conversation-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        sizes: dict[int, int] = {}
        runs: set[str] = set()
        for turn in range(1, turns + 1):
            # A full run refuses a message until it has continued as new: send it again.
            answer = await send_message(handle, f"Calculate {turn} * 23")
            assert answer == f"{turn} * 23 = {turn * 23}", (turn, answer)
            if turn in (5, 10, turns - 6, turns - 1) or turn % per_run == 1:
                run_id, size = await history_bytes(client, handle.id)
                runs.add(run_id)
                sizes[turn] = size
        status = await handle.query(AgentWorkflow.get_status)
        view = await handle.query(AgentWorkflow.get_history)
    # Bytes added per turn, averaged over five turns; the last turn is left out because the
    # run continues as new right after it.
    early = (sizes[10] - sizes[5]) / 5
    late = (sizes[turns - 1] - sizes[turns - 6]) / 5
    print(
        f"\nhistory bytes per turn: turns 6-10 = {early:,.0f}, turns {turns - 5}-{turns - 1} = "
        f"{late:,.0f} (x{late / early:.2f}); runs = {len(runs) + 1}; "
        f"biggest run = {sizes[turns - 1]:,} bytes"
    )
    assert status.turns == turns
    assert view.earlier_messages + len(view.messages) == turns * 4
    # Turns 1, 26, 51 and 76 were sampled in four runs: three continue-as-new at least (streamed
    # text adds a signal per batch, so Temporal may suggest continuing as new sooner).
    assert len(runs) >= 4
    assert late <= 1.5 * early


def failed_workflow_tasks(events: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    return [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]


async def test_a_one_megabyte_message_is_rejected_cleanly(time_skipping_env: WorkflowEnvironment):
    async with real_agent(time_skipping_env) as handle:
        with pytest.raises(WorkflowUpdateFailedError) as failure:
            await handle.execute_update(AgentWorkflow.send_message, "x" * 1_000_000)
        answer = await handle.execute_update(AgentWorkflow.send_message, "Echo still here")
        events = (await handle.fetch_history()).events
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.message == (
        "the message has 1,000,000 characters; the limit is 32,000"
    )
    assert answer == "still here"
    assert failed_workflow_tasks(events) == []


async def test_a_five_megabyte_tool_result_is_capped_inside_the_activity(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    huge_echo = dataclasses.replace(TOOLS["echo"], function=lambda args: "y" * 5_000_000)
    monkeypatch.setitem(TOOLS, "echo", huge_echo)
    async with real_agent(time_skipping_env) as handle:
        answer = await handle.execute_update(AgentWorkflow.send_message, "Echo anything")
        events = (await handle.fetch_history()).events
    assert answer.endswith("[... 4,984,000 more characters cut]")
    assert len(answer) < 17_000
    assert failed_workflow_tasks(events) == []
    assert sum(event.ByteSize() for event in events) < 200_000

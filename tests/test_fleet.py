"""A fleet of orchestrator workers: two processes on one task queue, and one of them killed.

Two `orchestrator_worker.py` processes (the program people run, started as the Python process
itself, so `kill -9` kills the worker) poll the same task queue of a dev server of the test's own;
the IT and Finance workers run in the test process. Fifty conversations each get two messages at
once (a local tool and a Nexus call), the offline model takes 400 ms per call, and one worker is
killed with SIGKILL while it runs LLM calls. Then every conversation gets a third message, which
only the survivor can serve. Every accepted message must be answered exactly once: one accepted
and one completed Update per Update id in the event history, each user message once in the
conversation and one answer per message. Nothing here measures wall-clock time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from app.agent.models import AgentConfig, AgentInput, AgentResult, Message
from app.agent.workflow import AgentWorkflow
from app.core.names import FINANCE, IT, ORCHESTRATOR
from app.core.processes import Child
from app.core.setup import ensure_nexus_setup
from app.finance.worker import finance_worker
from app.it.worker import it_worker
from tests.conftest import client_for, start_dev_server
from tests.stack_processes import program_env, start_orchestrator_worker, wait_until_polling

CONVERSATIONS = 50
Handle = WorkflowHandle[AgentWorkflow, AgentResult]


@dataclass
class Sent:
    """One accepted message: its conversation, its Update, and the answer it must get."""

    handle: Handle
    text: str
    expected: str
    update: WorkflowUpdateHandle[str]


def first_wave(n: int) -> list[tuple[str, str]]:
    """Two messages for conversation `n`, with the answers the offline model gives (a prefix)."""
    return [
        (f"Calculate {n} * 11", f"{n} * 11 = {n * 11}"),
        ("Stock price of AAPL?", "AAPL is at $"),
    ]


def second_wave(n: int) -> list[tuple[str, str]]:
    return [(f"Echo fleet {n}", f"fleet {n}")]


@pytest.fixture
async def fleet_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of its own (the fleet polls the real task queue) with the Nexus teams."""
    env = await start_dev_server()
    try:
        await ensure_nexus_setup(env.client)
        async with AsyncExitStack() as stack:
            for team, factory in ((IT, it_worker), (FINANCE, finance_worker)):
                team_client = await client_for(env, team.namespace)
                await stack.enter_async_context(factory(team_client))
            yield env
    finally:
        await env.shutdown()
        await asyncio.sleep(0.5)


Wave = Callable[[int], list[tuple[str, str]]]


async def send_all(handles: list[Handle], wave: Wave) -> list[Sent]:
    """Send every conversation its messages of `wave` at once; return them once accepted."""

    async def accept(handle: Handle, text: str, expected: str) -> Sent:
        update = await handle.start_update(
            AgentWorkflow.send_message,
            text,
            id=f"{handle.id}/{uuid.uuid4()}",
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        return Sent(handle, text, expected, update)

    return list(
        await asyncio.gather(
            *(
                accept(handle, text, expected)
                for n, handle in enumerate(handles)
                for text, expected in wave(n)
            )
        )
    )


async def wait_for_llm_calls_on(client: Client, handles: list[Handle], worker: Child) -> int:
    """Wait until `worker` is running LLM calls; how many it runs at that moment."""
    identity = f"{worker.pid}@"
    for _ in range(600):
        descriptions = await asyncio.gather(*(handle.describe() for handle in handles))
        running = sum(
            activity.activity_type.name == "plan_next_action"
            and activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            and activity.last_worker_identity.startswith(identity)
            for description in descriptions
            for activity in description.raw_description.pending_activities
        )
        if running:
            return running
        await asyncio.sleep(0.05)
    raise AssertionError(f"the worker never ran an LLM call:\n{worker.log_tail(40)}")


def events(history: WorkflowHistory, event_type: EventType.ValueType) -> list:
    return [event for event in history.events if event.event_type == event_type]


def update_ids(history: WorkflowHistory, event_type: EventType.ValueType) -> Counter[str]:
    """How many events of `event_type` each Update id has (accepted or completed)."""
    counts: Counter[str] = Counter()
    for event in events(history, event_type):
        if event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            counts[
                event.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
            ] += 1
        else:
            counts[event.workflow_execution_update_completed_event_attributes.meta.update_id] += 1
    return counts


def plan_attempts(history: WorkflowHistory) -> list[int]:
    """The attempt that completed, for every LLM call in `history`."""
    scheduled = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
        for event in events(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    }
    return [
        event.activity_task_started_event_attributes.attempt
        for event in events(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
        if scheduled[event.activity_task_started_event_attributes.scheduled_event_id]
        == "plan_next_action"
    ]


def answers_in(messages: list[Message]) -> list[str]:
    """The final answers of a conversation: assistant messages that ask for no tool."""
    return [m.content or "" for m in messages if m.role == "assistant" and not m.tool_calls]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_two_workers_answer_every_message_once_through_a_kill_9(
    fleet_server: WorkflowEnvironment, tmp_path: Path
):
    client = fleet_server.client
    env = program_env(
        TEMPORAL_ADDRESS=client.service_client.config.target_host, OFFLINE_MODEL_LATENCY_MS="400"
    )
    fleet = [await start_orchestrator_worker(env, tmp_path / f"worker-{n}.log") for n in (1, 2)]
    victim, survivor = fleet
    try:
        for worker in fleet:
            await wait_until_polling(client, worker, timeout=120)
        # A lost LLM attempt is retried once its heartbeat timeout passes.
        config = AgentConfig(llm_heartbeat_timeout_seconds=5)
        handles: list[Handle] = [
            await client.start_workflow(
                AgentWorkflow.run,
                AgentInput(config=config),
                id=f"fleet-{n}-{uuid.uuid4()}",
                task_queue=ORCHESTRATOR.task_queue,
            )
            for n in range(CONVERSATIONS)
        ]
        sent = await send_all(handles, first_wave)
        answers = {s.update.id: asyncio.ensure_future(s.update.result()) for s in sent}

        in_flight = await wait_for_llm_calls_on(client, handles, victim)
        victim.process.kill()
        await victim.process.wait()
        # Sent while the fleet is one worker short: only the survivor can answer these.
        later = await send_all(handles, second_wave)
        sent += later
        answers |= {s.update.id: asyncio.ensure_future(s.update.result()) for s in later}

        try:
            await asyncio.wait_for(asyncio.gather(*answers.values()), 180)
        except TimeoutError:
            unanswered = sum(not answer.done() for answer in answers.values())
            raise AssertionError(
                f"{unanswered} of {len(answers)} messages unanswered after 180 s; the survivor's "
                f"log:\n{survivor.log_tail(40)}"
            ) from None
        views = await asyncio.gather(
            *(handle.query(AgentWorkflow.get_history) for handle in handles)
        )
        for handle in handles:
            await handle.signal(AgentWorkflow.end_conversation)
        await asyncio.gather(*(handle.result() for handle in handles))
        histories = await asyncio.gather(*(handle.fetch_history() for handle in handles))
    finally:
        for worker in fleet:
            await worker.stop()

    print(f"killed worker {victim.pid} while it ran {in_flight} LLM calls")
    for s in sent:
        assert answers[s.update.id].result().startswith(s.expected), (s.text, answers[s.update.id])
    for handle, view, history in zip(handles, views, histories, strict=True):
        mine = [s for s in sent if s.handle is handle]
        ids = Counter(s.update.id for s in mine)
        assert len(ids) == 3
        # Exactly once per Update id: accepted once, completed once, whatever the kill did.
        assert update_ids(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) == ids
        assert update_ids(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED) == ids
        # Each user message once in the conversation, and one answer for each.
        users = [m.content or "" for m in view.messages if m.role == "user"]
        assert sorted(users) == sorted(s.text for s in mine)
        assert sorted(answers_in(view.messages)) == sorted(
            answers[s.update.id].result() for s in mine
        )

    # Both workers served turns, and the kill landed mid-call: some LLM call needed a retry.
    served_by = {
        event.workflow_task_completed_event_attributes.identity.split("@")[0]
        for history in histories
        for event in events(history, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    }
    assert {str(victim.pid), str(survivor.pid)} <= served_by
    retried = [history for history in histories if max(plan_attempts(history)) > 1]
    assert retried, "no LLM call was retried: the kill did not land mid-call"
    # The histories the kill interrupted replay with today's code.
    replayer = Replayer(workflows=[AgentWorkflow], data_converter=pydantic_data_converter)
    for history in retried:
        await replayer.replay_workflow(history)

"""Runs that always drain: a full run refuses new messages, answers its queue, continues as new.

On the time-skipping server: the refusal (`ConversationRunFull`) and its retry with the same
Update id, answers carried across continue-as-new (a repeated id is never run twice), and the
config carried along. On the dev server, whose runs report their real history size: the server's
continue-as-new suggestion, the byte budget, and two senders of near-limit messages racing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from app.agent.models import AgentConfig, AgentInput, HistoryPage, Message
from app.agent.sending import is_run_full, send_message
from app.agent.workflow import RUN_FULL, AgentWorkflow
from app.core.dev_server import dev_server_args, find_binary
from app.core.errors import failure_message
from tests.doubles import AgentHarness, ScriptedLLM, history, says


@dataclass
class RunFigures:
    """What one run of a conversation did, from its event history."""

    accepted: int
    history_bytes: int
    events: int
    terminated: bool
    answers: list[str]


def numbered_answers(messages: list[Message]) -> Message:
    users = [m for m in messages if m.role == "user"]
    return says(f"answer to {users[-1].content}")


async def run_ids(harness: AgentHarness, workflow_id: str) -> str:
    return (await harness.client.get_workflow_handle(workflow_id).describe()).run_id


async def test_a_full_run_refuses_new_messages_until_it_has_continued_as_new(
    time_skipping_env: WorkflowEnvironment,
):
    llm = ScriptedLLM(numbered_answers)
    llm.gate = asyncio.Event()
    harness = AgentHarness(time_skipping_env, llm, AgentConfig(max_turns_per_run=2))
    async with harness.worker():
        handle = await harness.start()
        first_run = await run_ids(harness, handle.id)
        accepted = [
            await handle.start_update(
                AgentWorkflow.send_message, text, wait_for_stage=WorkflowUpdateStage.ACCEPTED
            )
            for text in ("one", "two")
        ]
        # Two turns accepted fill this run, although neither has been answered yet.
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(AgentWorkflow.send_message, "three", id="msg-3")
        llm.gate.set()
        answers = [await update.result() for update in accepted]
        third = await send_message(handle, "three", update_id="msg-3")
        second_run = await run_ids(harness, handle.id)
        messages = await history(handle)
    assert is_run_full(refused.value)
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == RUN_FULL
    assert refused.value.cause.non_retryable
    assert refused.value.cause.message == (
        "this conversation is moving to a fresh run (continue-as-new) after the messages already "
        "queued: send the message again in a moment, with the same Update id"
    )
    assert answers == ["answer to one", "answer to two"]
    assert third == "answer to three"
    assert second_run != first_run
    assert [m.content for m in messages][-2:] == ["three", "answer to three"]
    assert len(llm.inputs) == 3


async def test_the_same_update_id_after_continue_as_new_is_answered_from_the_record(
    time_skipping_env: WorkflowEnvironment,
):
    llm = ScriptedLLM(lambda messages: says(f"answer number {len(llm.inputs)}"))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig(max_turns_per_run=1))
    async with harness.worker():
        handle = await harness.start()
        first = await handle.execute_update(AgentWorkflow.send_message, "hello", id="X")
        # One turn fills the run: wait for the next one, as a retrying client would.
        while (await run_ids(harness, handle.id)) == handle.result_run_id:
            await asyncio.sleep(0.05)
        again = await handle.execute_update(AgentWorkflow.send_message, "hello", id="X")
        status = await handle.query(AgentWorkflow.get_status)
        view = await handle.query(AgentWorkflow.get_history)
    assert first == again == "answer number 1"
    assert len(llm.inputs) == 1
    assert status.turns == 1
    assert view.earlier_messages + len(view.messages) == 2


async def test_only_the_newest_answers_are_remembered(time_skipping_env: WorkflowEnvironment):
    llm = ScriptedLLM(numbered_answers)
    config = AgentConfig(max_turns_per_run=1, remembered_answers=2)
    harness = AgentHarness(time_skipping_env, llm, config)
    async with harness.worker():
        handle = await harness.start()
        for i in range(4):
            await send_message(handle, f"m{i}", update_id=f"id-{i}")
        # id-3 and id-2 are on record; id-0 was forgotten, so it runs as a new message.
        assert await send_message(handle, "ignored", update_id="id-3") == "answer to m3"
        assert await send_message(handle, "ignored", update_id="id-2") == "answer to m2"
        assert await send_message(handle, "m0 again", update_id="id-0") == "answer to m0 again"
    assert len(llm.inputs) == 5


async def test_continue_as_new_carries_the_config_into_the_next_run(
    time_skipping_env: WorkflowEnvironment,
):
    config = AgentConfig(max_turns_per_run=1, max_message_chars=50)
    harness = AgentHarness(time_skipping_env, ScriptedLLM(numbered_answers), config)
    async with harness.worker():
        handle = await harness.start()
        assert await send_message(handle, "first") == "answer to first"
        assert await send_message(handle, "second") == "answer to second"
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await send_message(handle, "y" * 51)
        description = await harness.client.get_workflow_handle(handle.id).describe()
    # The third run is in force, and so is the 50-character limit the first run was given.
    assert description.run_id != handle.result_run_id
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.message == "the message has 51 characters; the limit is 50"


async def runs_of(client: Client, workflow_id: str, first_run_id: str) -> list[RunFigures]:
    """What every run of the conversation did, oldest first, following the continue-as-new chain."""
    runs = []
    run_id: str | None = first_run_id
    while run_id:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        events = (await handle.fetch_history()).events
        runs.append(
            RunFigures(
                accepted=sum(
                    e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
                    for e in events
                ),
                history_bytes=sum(e.ByteSize() for e in events),
                events=len(events),
                terminated=any(
                    e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED
                    for e in events
                ),
                answers=[
                    e.workflow_execution_update_completed_event_attributes.meta.update_id
                    for e in events
                    if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED
                ],
            )
        )
        last = events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            else None
        )
    return runs


async def test_a_run_refuses_messages_before_its_history_passes_the_byte_budget(
    dev_env: WorkflowEnvironment,
):
    # Each turn may add 60 KB, the next run's input 70 KB: room for a few turns of 10 KB messages.
    config = AgentConfig(
        max_turn_bytes=60_000,
        max_plan_input_bytes=60_000,
        remembered_answers_bytes=10_000,
        max_history_bytes_per_run=300_000,
    )
    harness = AgentHarness(dev_env, ScriptedLLM(lambda m: says("ok")), config)
    async with harness.worker():
        handle = await harness.start()
        for i in range(12):
            assert await send_message(handle, f"{i} " + "z" * 10_000) == "ok"
        runs = await runs_of(harness.client, handle.id, handle.result_run_id or "")
    print(f"\nhistory bytes per run: {[run.history_bytes for run in runs]}")
    assert len(runs) >= 3
    assert all(run.history_bytes <= 300_000 for run in runs)
    assert sum(run.accepted for run in runs) == 12


@pytest.fixture(scope="module")
async def server_suggesting_continue_as_new() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new once a run has 40 events (default: 4 Ki)."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=find_binary("temporal"),
        dev_server_extra_args=dev_server_args()
        + ["--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40"],
    )
    yield env
    await env.shutdown()


async def test_a_run_continues_as_new_when_the_server_suggests_it(
    server_suggesting_continue_as_new: WorkflowEnvironment,
):
    harness = AgentHarness(
        server_suggesting_continue_as_new, ScriptedLLM(numbered_answers), AgentConfig()
    )
    async with harness.worker():
        handle = await harness.start()
        answers = []
        for i in range(12):
            try:
                answers.append(await send_message(handle, f"m{i}"))
            except WorkflowUpdateFailedError as err:  # say which refusal, not just "failed"
                raise AssertionError(f"m{i}: {failure_message(err)}") from err
        runs = await runs_of(harness.client, handle.id, handle.result_run_id or "")
    print(f"\nturns per run: {[run.accepted for run in runs]}")
    assert answers == [f"answer to m{i}" for i in range(12)]
    # Nothing but the suggestion ended these runs: far from 200 turns, 20 MB or 20,000 events.
    assert len(runs) >= 3
    # (Suggested at 40 events; a loaded machine splits turns into more workflow tasks.)
    assert all(run.events < 160 for run in runs)
    assert sum(run.accepted for run in runs) == 12


@pytest.mark.timeout(90)
async def test_two_busy_senders_of_near_limit_messages_never_overfill_a_run(
    dev_env: WorkflowEnvironment,
):
    config = AgentConfig()
    llm = ScriptedLLM(lambda messages: says(f"answer to {(messages[-1].content or '')[:12]}"))
    harness = AgentHarness(dev_env, llm, config)
    sent: dict[str, list[str]] = {}
    # The senders stop once the conversation has moved to a third run: two continue-as-new with
    # messages in flight, the moments a run could overfill.
    enough = asyncio.Event()

    async def sender(name: str) -> None:
        i = 0
        while not enough.is_set():
            update_id = f"{name}-{i}"
            text = f"{name}-{i:05d} ".ljust(31_900, "x")
            answer = await send_message(handle, text, update_id=update_id)
            sent.setdefault(update_id, []).append(answer)
            assert answer == f"answer to {text[:12]}", (update_id, answer)
            i += 1

    async def watch_runs() -> None:
        run_ids: set[str] = set()
        while len(run_ids) < 3:
            run_ids.add((await harness.client.get_workflow_handle(handle.id).describe()).run_id)
            await asyncio.sleep(0.1)
        enough.set()

    async with harness.worker():
        handle = await harness.start()
        # Six senders keep the run's queue busy: a run that waited for an empty queue would never
        # continue as new.
        await asyncio.gather(
            watch_runs(), *(sender(name) for name in ("a1", "a2", "a3", "b1", "b2", "b3"))
        )
        runs = await runs_of(harness.client, handle.id, handle.result_run_id or "")
        latest = await harness.client.get_workflow_handle(handle.id).describe()
        status = await handle.query(AgentWorkflow.get_status)
    answered = Counter(update_id for run in runs for update_id in run.answers)
    biggest = max(run.history_bytes for run in runs)
    print(
        f"\n{len(sent)} messages over {len(runs)} runs; turns per run "
        f"{[run.accepted for run in runs]}; biggest run {biggest:,} bytes"
    )
    assert latest.status == WorkflowExecutionStatus.RUNNING
    assert not any(run.terminated for run in runs)
    assert all(run.accepted <= config.max_turns_per_run for run in runs)
    assert biggest <= config.max_history_bytes_per_run
    # Every message was answered exactly once, in the history as well as to its sender.
    assert all(len(answers) == 1 for answers in sent.values())
    assert answered == Counter(set(sent))
    assert status.turns == len(sent)
    assert len(runs) >= 3


async def test_every_remembered_id_is_answered_whatever_the_size_of_its_answer(
    time_skipping_env: WorkflowEnvironment,
):
    # Answers of 1 kB, 4 kB of budget for twelve of them: the older keep only id and digest.
    llm = ScriptedLLM(lambda messages: says(f"{messages[-1].content} ".ljust(1_000, "x")))
    config = AgentConfig(max_turns_per_run=3, remembered_answers=20, remembered_answers_bytes=4_000)
    harness = AgentHarness(time_skipping_env, llm, config)
    async with harness.worker():
        handle = await harness.start()
        for i in range(12):
            await send_message(handle, f"m{i}", update_id=f"id-{i}")
        # id-0 is the 12th message back, four runs ago: answered from the record, not run.
        again = await send_message(handle, "m0", update_id="id-0")
        newest = await send_message(handle, "m11", update_id="id-11")
    assert len(llm.inputs) == 12
    assert again.startswith("This message was already answered (an answer of 1,000 bytes, sha256 ")
    assert newest == "m11 ".ljust(1_000, "x")


async def test_the_history_is_read_in_pages_that_stay_below_the_grpc_limit(
    time_skipping_env: WorkflowEnvironment,
):
    # Four turns of two ~30 kB messages each, read back 70 kB (one turn) at a time.
    llm = ScriptedLLM(numbered_answers)
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        for i in range(4):
            await send_message(handle, f"m{i} ".ljust(30_000, "x"))
        pages = []
        before = None
        while before != 0:
            page = await handle.query(
                AgentWorkflow.get_history_page, HistoryPage(before=before, max_bytes=70_000)
            )
            pages.append(page)
            before = page.earlier_messages
        whole = await handle.query(AgentWorkflow.get_history)
    assert [(page.earlier_messages, len(page.messages)) for page in pages] == [
        (6, 2),
        (4, 2),
        (2, 2),
        (0, 2),
    ]
    read = [m for page in reversed(pages) for m in page.messages]
    assert read == whole.messages and len(read) == 8


async def test_the_event_log_handed_to_the_next_run_stays_within_its_budget(
    time_skipping_env: WorkflowEnvironment,
):
    # Answers of 1,500 characters publish ~2 kB events: more than the log's budget of 1 kB.
    llm = ScriptedLLM(lambda messages: says("x" * 1_500))
    config = AgentConfig(max_turns_per_run=2, max_stream_state_bytes=1_000)
    harness = AgentHarness(time_skipping_env, llm, config)
    async with harness.worker():
        handle = await harness.start()
        for i in range(3):
            await send_message(handle, f"m{i}")
        first = await harness.client.get_workflow_handle(
            handle.id, run_id=handle.result_run_id
        ).fetch_history()
    [continued] = [
        e.workflow_execution_continued_as_new_event_attributes
        for e in first.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    ]
    [carried] = await pydantic_data_converter.decode(continued.input.payloads, [AgentInput])
    assert carried.stream_state is not None
    assert carried.stream_state.log == []
    assert carried.stream_state.base_offset > 0  # offsets go on where they were

"""The conversation's Workflow Stream: which events a turn publishes, in which order, and delivery.

On the time-skipping server, with the LLM replaced by doubles registered as `plan_next_action`
(one of them streams its text through the real `TextPublisher`). A subscriber reads the stream as
the chat client does, with `WorkflowStreamClient.subscribe`, and keeps the events of one turn.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from app.agent.llm.activity import plan_next_action
from app.agent.llm.client import OFFLINE_MODEL
from app.agent.models import AgentConfig, PlanInput, PlanOutput
from app.agent.stream.activity_side import StreamSettings, TextPublisher
from app.agent.stream.events import (
    EVENT_TYPE,
    EVENTS_TOPIC,
    AgentEvent,
    DropPartialText,
    LLMAttemptFailed,
    PlanningStep,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnAnswered,
    TurnStarted,
)
from app.agent.tools.activity import execute_tool
from app.agent.workflow import AgentWorkflow
from tests.doubles import AgentHarness, ScriptedLLM, call, says, tools_then_answer

FAST = AgentConfig(llm_retry_initial_seconds=0.1, llm_retry_max_seconds=0.1)


async def read_events(
    client: Client, workflow_id: str, *, from_offset: int = 0, until: type = TurnAnswered
) -> list[tuple[int, AgentEvent]]:
    """(offset, event) pairs from `from_offset` up to and including the first `until` event."""
    stream = WorkflowStreamClient.create(client, workflow_id)
    read: list[tuple[int, AgentEvent]] = []
    async for item in stream.subscribe(
        [EVENTS_TOPIC], from_offset, result_type=EVENT_TYPE, poll_cooldown=timedelta(0)
    ):
        read.append((item.offset, item.data))
        if isinstance(item.data, until):
            break
    return read


def summary(events: list[AgentEvent]) -> list[tuple[Any, ...]]:
    """The events without ids and timings, for comparing sequences."""
    shown: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, TurnStarted):
            shown.append(("started", event.turn))
        elif isinstance(event, PlanningStep):
            shown.append(("step", event.step))
        elif isinstance(event, TextDelta):
            shown.append(("text", event.text))
        elif isinstance(event, DropPartialText):
            shown.append(("drop", event.attempt))
        elif isinstance(event, LLMAttemptFailed):
            shown.append(("attempt failed", event.attempt, event.will_retry))
        elif isinstance(event, ToolCallStarted):
            shown.append(("tool", event.tool, event.arguments, event.endpoint))
        elif isinstance(event, ToolCallFinished):
            shown.append(("tool done", event.tool, event.ok))
        elif isinstance(event, TurnAnswered):
            shown.append(("answer", event.answer, event.model))
    return shown


class StreamingLLM:
    """A `plan_next_action` double that streams its answer word by word, failing on attempt 1."""

    def __init__(self, answer: str, fail_first_attempt: bool = False) -> None:
        self.answer = answer
        self.fail_first_attempt = fail_first_attempt

    @activity.defn(name="plan_next_action")
    async def plan_next_action(self, input: PlanInput) -> PlanOutput:
        settings = StreamSettings(batch_interval_seconds=0.01)
        failing = self.fail_first_attempt and activity.info().attempt == 1
        async with TextPublisher(input.turn_id, settings) as publisher:
            words = self.answer.split(" ")
            for index, word in enumerate(words[:2] if failing else words):
                publisher.text(word if index == 0 else " " + word)
                await asyncio.sleep(0.05)  # one batch per word
            if failing:
                error = ApplicationError("the provider dropped the connection", type="LLMError")
                publisher.failed(error)
                raise error
        return PlanOutput(message=says(self.answer), model="streaming-double")


async def test_a_plain_turn_streams_its_text_then_the_answer(
    time_skipping_env: WorkflowEnvironment,
):
    llm = StreamingLLM("Hello from the agent")
    harness = AgentHarness(time_skipping_env, ScriptedLLM(lambda _: says("")), FAST)
    async with _worker_with(harness, llm.plan_next_action):
        handle = await harness.start()
        answer = await handle.execute_update(AgentWorkflow.send_message, "Hello", id="turn-a")
        events = [event for _, event in await read_events(harness.client, handle.id)]
    assert answer == "Hello from the agent"
    assert {event.turn_id for event in events} == {"turn-a"}
    assert summary(events) == [
        ("started", 1),
        ("step", 1),
        ("text", "Hello"),
        ("text", " from"),
        ("text", " the"),
        ("text", " agent"),
        ("answer", "Hello from the agent", "streaming-double"),
    ]


async def test_a_retried_attempt_tells_the_client_to_drop_its_partial_text(
    time_skipping_env: WorkflowEnvironment,
):
    llm = StreamingLLM("Hello from the agent", fail_first_attempt=True)
    harness = AgentHarness(time_skipping_env, ScriptedLLM(lambda _: says("")), FAST)
    async with _worker_with(harness, llm.plan_next_action):
        handle = await harness.start()
        answer = await handle.execute_update(AgentWorkflow.send_message, "Hello", id="turn-r")
        events = [event for _, event in await read_events(harness.client, handle.id)]
    assert answer == "Hello from the agent"
    assert summary(events) == [
        ("started", 1),
        ("step", 1),
        ("text", "Hello"),
        ("text", " from"),
        # The failing attempt voids its text and says it will be retried ...
        ("drop", 1),
        ("attempt failed", 1, True),
        # ... and the next attempt voids it again, in case its worker died without a word.
        ("drop", 1),
        ("text", "Hello"),
        ("text", " from"),
        ("text", " the"),
        ("text", " agent"),
        ("answer", "Hello from the agent", "streaming-double"),
    ]
    # What a client that applies the drops shows: the answer once, never doubled words.
    assert _shown_text(events) == "Hello from the agent"


def _signals(history: Any) -> int:
    return sum(e.HasField("workflow_execution_signaled_event_attributes") for e in history.events)


async def test_a_quick_answer_sends_no_text_even_to_a_watcher(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    # The real planner and the offline model, its words spread over 0.2 s, and a batch interval
    # of 5 s: the first batch would leave 5 s after the call started, after the answer is ready.
    # Sending text would be one more signal (and workflow task) just before the answer itself,
    # which clients print in place of the streamed text.
    monkeypatch.setenv("LLM_MODEL", OFFLINE_MODEL)
    monkeypatch.setenv("OFFLINE_MODEL_LATENCY_MS", "200")
    monkeypatch.setenv("LLM_STREAM_TEXT", "1")
    monkeypatch.setenv("LLM_STREAM_BATCH_MS", "5000")
    harness = AgentHarness(time_skipping_env, ScriptedLLM(lambda _: says("")), FAST)
    async with _worker_with(harness, plan_next_action):
        handle = await harness.start()
        # A first turn warms LiteLLM up (its first call in a process takes seconds).
        await handle.execute_update(AgentWorkflow.send_message, "Hi", id="turn-w")
        before = _signals(await handle.fetch_history())
        seen: list[AgentEvent] = []
        watcher = asyncio.create_task(_collect(harness.client, handle.id, seen, answers=2))
        await _until(lambda: any(isinstance(event, TurnAnswered) for event in seen))
        answer = await handle.execute_update(AgentWorkflow.send_message, "Hello", id="turn-o")
        await watcher
        after = _signals(await handle.fetch_history())
    assert len(answer.split()) > 5
    assert not [event for event in seen if isinstance(event, TextDelta)]
    assert seen[-1] == TurnAnswered(turn_id="turn-o", answer=answer, model=OFFLINE_MODEL)
    assert before == after == 0


async def test_text_is_streamed_only_while_someone_watches(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    # A 1 s answer with 50 ms batches: streamed to a watcher in a few batches; to nobody, none.
    monkeypatch.setenv("LLM_MODEL", OFFLINE_MODEL)
    monkeypatch.setenv("OFFLINE_MODEL_LATENCY_MS", "1000")
    monkeypatch.setenv("LLM_STREAM_TEXT", "1")
    monkeypatch.setenv("LLM_STREAM_BATCH_MS", "50")
    harness = AgentHarness(time_skipping_env, ScriptedLLM(lambda _: says("")), FAST)
    async with _worker_with(harness, plan_next_action):
        handle = await harness.start()
        unwatched = await handle.execute_update(AgentWorkflow.send_message, "Hi", id="turn-1")
        after_first = _signals(await handle.fetch_history())
        seen: list[AgentEvent] = []
        # The watcher reads the first turn's events, then keeps a poll open for the next.
        watcher = asyncio.create_task(_collect(harness.client, handle.id, seen, answers=2))
        await _until(lambda: any(isinstance(event, TurnAnswered) for event in seen))
        watched = await handle.execute_update(AgentWorkflow.send_message, "Hello", id="turn-2")
        await watcher
        after_second = _signals(await handle.fetch_history())
    texts = {turn: "" for turn in ("turn-1", "turn-2")}
    for event in seen:
        if isinstance(event, TextDelta):
            texts[event.turn_id] += event.text
    assert unwatched and after_first == 0 and texts["turn-1"] == ""
    assert texts["turn-2"] and watched.startswith(texts["turn-2"])
    assert after_second >= 1


async def _collect(client: Client, workflow_id: str, seen: list[AgentEvent], answers: int) -> None:
    """Read the stream as the chat does until `answers` turns were answered."""
    stream = WorkflowStreamClient.create(client, workflow_id)
    async for item in stream.subscribe([EVENTS_TOPIC], 0, result_type=EVENT_TYPE):
        seen.append(item.data)
        if sum(isinstance(event, TurnAnswered) for event in seen) == answers:
            return


async def _until(condition: Any, timeout: float = 30) -> None:
    """Wait for `condition()` (a bool or an awaitable one), checking every 20 ms."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if await result if asyncio.iscoroutine(result) else result:
                return
            await asyncio.sleep(0.02)


async def test_a_local_tool_turn_publishes_the_call_and_its_outcome(
    time_skipping_env: WorkflowEnvironment,
):
    calc = call("calculator", {"expression": "15 * 23"}, "c1")
    bad = call("calculator", {"expression": "2 +"}, "c2")
    harness = AgentHarness(time_skipping_env, ScriptedLLM(tools_then_answer(calc, bad)), FAST)
    async with harness.worker():
        handle = await harness.start()
        await handle.execute_update(AgentWorkflow.send_message, "Calculate", id="turn-t")
        events = [event for _, event in await read_events(harness.client, handle.id)]
    shown = summary(events)
    assert shown[:4] == [
        ("started", 1),
        ("step", 1),
        ("tool", "calculator", '{"expression": "15 * 23"}', None),
        ("tool", "calculator", '{"expression": "2 +"}', None),
    ]
    # The two calls run at once: either may finish first.
    assert sorted(shown[4:6]) == [
        ("tool done", "calculator", False),
        ("tool done", "calculator", True),
    ]
    assert shown[6:] == [("step", 2), ("answer", "345 | Error: " + _error_of(events), "scripted")]
    finished = [event for event in events if isinstance(event, ToolCallFinished)]
    assert all(event.duration_ms >= 0 for event in finished)
    assert {event.call_id: event.ok for event in finished} == {"c1": True, "c2": False}


async def test_a_subscriber_follows_the_conversation_across_continue_as_new(
    time_skipping_env: WorkflowEnvironment,
):
    harness = AgentHarness(
        time_skipping_env,
        ScriptedLLM(lambda m: says(f"answer {len(m)}")),
        AgentConfig(max_turns_per_run=1),
    )
    async with harness.worker():
        handle = await harness.start()
        first_run = (await handle.describe()).run_id
        # Attached before the first turn, it must see both turns, the second one in the next run.
        reading = asyncio.create_task(_read_turns(harness.client, handle.id, turns=2))
        await asyncio.sleep(0.5)
        await handle.execute_update(AgentWorkflow.send_message, "one", id="turn-1")
        await handle.execute_update(AgentWorkflow.send_message, "two", id="turn-2")
        read = await asyncio.wait_for(reading, 30)
        assert (await handle.describe()).run_id != first_run
    offsets = [offset for offset, _ in read]
    assert offsets == sorted(set(offsets)), "every event once, in order"
    assert [(event.turn_id, type(event).__name__) for _, event in read] == [
        ("turn-1", "TurnStarted"),
        ("turn-1", "PlanningStep"),
        ("turn-1", "TurnAnswered"),
        ("turn-2", "TurnStarted"),
        ("turn-2", "PlanningStep"),
        ("turn-2", "TurnAnswered"),
    ]


async def test_a_subscriber_that_reconnects_mid_turn_sees_every_event_once(
    time_skipping_env: WorkflowEnvironment,
):
    calc = call("calculator", {"expression": "1 + 1"}, "c1")
    llm = ScriptedLLM(tools_then_answer(calc))
    harness = AgentHarness(time_skipping_env, llm, FAST)
    async with harness.worker():
        handle = await harness.start()
        sending = asyncio.create_task(
            handle.execute_update(AgentWorkflow.send_message, "1 + 1?", id="turn-m")
        )
        first = await read_events(harness.client, handle.id, until=ToolCallFinished)
        # Hold the second planning step while the subscriber is away.
        llm.gate = asyncio.Event()
        await asyncio.sleep(0.2)
        llm.gate.set()
        rest = await read_events(harness.client, handle.id, from_offset=first[-1][0] + 1)
        await sending
        everything = await read_events(harness.client, handle.id)
    assert first + rest == everything
    assert [type(event).__name__ for _, event in everything] == [
        "TurnStarted",
        "PlanningStep",
        "ToolCallStarted",
        "ToolCallFinished",
        "PlanningStep",
        "TurnAnswered",
    ]


async def _read_turns(client: Client, workflow_id: str, turns: int) -> list[tuple[int, AgentEvent]]:
    read: list[tuple[int, AgentEvent]] = []
    stream = WorkflowStreamClient.create(client, workflow_id)
    async for item in stream.subscribe(
        [EVENTS_TOPIC], result_type=EVENT_TYPE, poll_cooldown=timedelta(0)
    ):
        read.append((item.offset, item.data))
        if sum(isinstance(event, TurnAnswered) for _, event in read) == turns:
            return read
    return read


def _shown_text(events: list[AgentEvent]) -> str:
    shown = ""
    for event in events:
        if isinstance(event, TextDelta):
            shown += event.text
        elif isinstance(event, DropPartialText | PlanningStep):
            shown = ""
    return shown


def _error_of(events: list[AgentEvent]) -> str:
    failed = [e for e in events if isinstance(e, ToolCallFinished) and not e.ok]
    return failed[0].error or ""


def _worker_with(harness: AgentHarness, plan: Any) -> Worker:
    return Worker(
        harness.client,
        task_queue=harness.task_queue,
        workflows=[AgentWorkflow],
        activities=[plan, execute_tool],
    )

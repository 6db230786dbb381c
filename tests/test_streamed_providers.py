"""Streamed provider calls (`stream: true`): the fake providers' server-sent events through LiteLLM.

`llm_client.complete(..., on_text=...)` against the OpenAI and Anthropic fakes: `on_text` gets the
answer's text in pieces, in order; tool-call deltas (arguments JSON split over several chunks)
never reach it and come back rebuilt exactly; the usage of the last chunk is counted. Then the
whole workflow on the dev server: a streamed answer reaches the conversation's Workflow Stream
as text, and a stream the provider drops mid-answer is retried, its partial text dropped first,
so a client never shows doubled words.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from rich.console import Console
from temporalio.contrib.workflow_streams import WorkflowStreamClient
from temporalio.testing import WorkflowEnvironment

from app.agent.llm.client import (
    LLMSettings,
    complete,
    litellm_module,
    response_usage,
)
from app.agent.llm.streaming import StreamIncomplete
from app.agent.stream.events import (
    EVENT_TYPE,
    EVENTS_TOPIC,
    AgentEvent,
    DropPartialText,
    LLMAttemptFailed,
    PlanningStep,
    TextDelta,
    TurnAnswered,
    TurnStarted,
)
from app.agent.tools.catalog import tool_schemas
from app.agent.workflow import AgentWorkflow
from app.cli.chat.live import LiveView
from tests.doubles import real_agent, send
from tests.fake_providers import (
    WIRES,
    FakeProvider,
    InOrder,
    OpenAIWire,
    ReceivedRequest,
    Reply,
    Wire,
    WireCall,
    ended_early,
    text_pieces,
    use_provider,
    without_end_marker,
)

by_wire = pytest.mark.parametrize("wire", WIRES, ids=lambda wire: wire.name)

ANSWER = "The result is 345, and AAPL trades at $189.50 today."
QUESTION = [{"role": "user", "content": "What is 15 * 23, and what does AAPL cost?"}]


@pytest.fixture(scope="module", autouse=True)
async def litellm_loaded() -> None:
    await asyncio.to_thread(litellm_module)


async def streamed(
    wire: Wire, reply: Reply, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, list[str], ReceivedRequest]:
    """One streamed `complete` against `wire`'s fake: the response, the text pieces, the request."""
    pieces: list[str] = []
    async with FakeProvider(lambda _: reply, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        response, _ = await complete(
            QUESTION, tool_schemas(), LLMSettings.from_env(), pieces.append
        )
    [request] = server.requests
    return response, pieces, request


@by_wire
async def test_text_arrives_in_pieces_in_order_and_the_usage_is_counted(
    wire: Wire, monkeypatch: pytest.MonkeyPatch
):
    response, pieces, request = await streamed(wire, wire.text(ANSWER), monkeypatch)
    assert request.body["stream"] is True
    if isinstance(wire, OpenAIWire):
        assert request.body["stream_options"] == {"include_usage": True}
    # The pieces as the provider sent them (LiteLLM may join some), in order, nothing lost.
    assert "".join(pieces) == ANSWER
    assert len(pieces) > 1
    assert all(piece in text_pieces(ANSWER) or piece in ANSWER for piece in pieces)
    message = response.choices[0].message
    assert message.content == ANSWER
    assert not message.tool_calls
    usage = response_usage(response, wire.model)
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 5)


@by_wire
async def test_tool_call_deltas_never_reach_on_text_and_are_rebuilt_exactly(
    wire: Wire, monkeypatch: pytest.MonkeyPatch
):
    calls = [
        WireCall.of("call_calc", "calculator", {"expression": "sqrt(2) * pi"}),
        WireCall.of("call_echo", "echo", {"text": 'say "hi", then {stop}'}),
    ]
    response, pieces, _ = await streamed(wire, wire.tool_calls(*calls), monkeypatch)
    assert pieces == []
    rebuilt = response.choices[0].message.tool_calls
    assert [(c.id, c.function.name) for c in rebuilt] == [(c.id, c.name) for c in calls]
    # Each call's arguments are whole JSON again, equal to what was sent in pieces.
    assert [json.loads(c.function.arguments) for c in rebuilt] == [
        json.loads(c.arguments) for c in calls
    ]
    if isinstance(wire, OpenAIWire):  # passed through as sent: the same text
        assert [c.function.arguments for c in rebuilt] == [c.arguments for c in calls]
    usage = response_usage(response, wire.model)
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 5)


@by_wire
async def test_a_stream_dropped_mid_answer_is_an_error_not_a_short_answer(
    wire: Wire, monkeypatch: pytest.MonkeyPatch
):
    reply = wire.text(ANSWER)
    assert reply.events is not None
    cut = Reply(reply.body, events=reply.events, cut_after=len(reply.events) // 2)
    pieces: list[str] = []
    async with FakeProvider(lambda _: cut, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        with pytest.raises(litellm_module().exceptions.MidStreamFallbackError) as raised:
            await complete(QUESTION, [], LLMSettings.from_env(), pieces.append)
    # Some text had arrived: the caller must be able to tell it was not the whole answer.
    assert pieces and "".join(pieces) != ANSWER
    assert ANSWER.startswith("".join(pieces))
    assert "Response payload is not completed" in str(raised.value)


def shown(events: list[AgentEvent]) -> str:
    """The text a terminal shows for `events`, applied to the chat's live view."""
    view = LiveView(Console(file=io.StringIO()))
    for event in events:
        view.apply(event)
    return view.partial


async def turn_events(env: WorkflowEnvironment, workflow_id: str) -> list[AgentEvent]:
    """Every event on the conversation's stream, up to the first turn's answer."""
    events: list[AgentEvent] = []
    stream = WorkflowStreamClient.create(env.client, workflow_id)
    async for item in stream.subscribe([EVENTS_TOPIC], 0, result_type=EVENT_TYPE):
        events.append(item.data)
        if isinstance(item.data, TurnAnswered):
            return events
    raise AssertionError(f"the stream ended without an answer: {events}")


@pytest.mark.timeout(90)
async def test_the_workflow_streams_the_answers_text(
    dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    wire = OpenAIWire()
    whole = wire.text(ANSWER)
    # The words arrive 0.1 s apart: the first is sent at once, as the model writes.
    slow = Reply(whole.body, events=whole.events, event_delay_seconds=0.1)
    async with FakeProvider(lambda _: slow, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(dev_env) as handle:
            assert await send(handle, "What is 15 * 23?") == ANSWER
            events = await turn_events(dev_env, handle.id)
            usage = await handle.query(AgentWorkflow.get_usage)
    assert [type(e) for e in events[:2]] == [TurnStarted, PlanningStep]
    assert isinstance(events[-1], TurnAnswered) and events[-1].answer == ANSWER
    deltas = [e for e in events if isinstance(e, TextDelta)]
    # What was still unsent when the answer was ready comes whole in the answer event, which
    # the client prints in place of the streamed text.
    assert deltas and ANSWER.startswith("".join(d.text for d in deltas))
    assert not any(isinstance(e, DropPartialText | LLMAttemptFailed) for e in events)
    assert shown(events) and ANSWER.startswith(shown(events))
    # The usage chunk is counted: the provider's own token counts.
    assert (usage.total.calls, usage.total.prompt_tokens, usage.total.completion_tokens) == (
        1,
        10,
        5,
    )


@pytest.mark.timeout(90)
async def test_a_stream_dropped_mid_answer_is_retried_and_its_partial_text_dropped_first(
    dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    wire = OpenAIWire()
    whole = wire.text(ANSWER)
    assert whole.events is not None
    # The first attempt's text arrives slowly, in batches, then the connection drops.
    monkeypatch.setenv("LLM_STREAM_BATCH_MS", "50")
    cut = Reply(whole.body, events=whole.events, cut_after=6, event_delay_seconds=0.2)
    async with FakeProvider(InOrder([cut, whole]), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(dev_env) as handle:
            assert await send(handle, "What is 15 * 23?") == ANSWER
            events = await turn_events(dev_env, handle.id)
    assert len(server.requests) == 2
    failed = next(i for i, e in enumerate(events) if isinstance(e, LLMAttemptFailed))
    first, second = events[:failed], events[failed + 1 :]
    # The first attempt showed some of the answer, then said to drop it.
    first_text = "".join(e.text for e in first if isinstance(e, TextDelta))
    assert first_text and ANSWER.startswith(first_text) and first_text != ANSWER
    assert isinstance(first[-1], DropPartialText) and first[-1].attempt == 1
    failure = events[failed]
    assert isinstance(failure, LLMAttemptFailed) and failure.will_retry and failure.attempt == 1
    # The next attempt's events start by dropping whatever the failed one showed.
    assert isinstance(second[0], DropPartialText) and second[0].attempt == 1
    assert ANSWER.startswith("".join(e.text for e in second if isinstance(e, TextDelta)))
    # What a client shows while the turn runs: never doubled words; then the answer in place.
    assert ANSWER.startswith(shown(events))
    assert isinstance(events[-1], TurnAnswered) and events[-1].answer == ANSWER


@by_wire
@pytest.mark.parametrize("kind", ["text", "tool call"])
async def test_a_stream_that_ends_before_the_provider_says_so_is_incomplete(
    wire: Wire, kind: str, monkeypatch: pytest.MonkeyPatch
):
    call = WireCall.of("call_roi", "calculate_roi", {"principal": 1000, "rate": 0.05, "years": 3})
    whole = wire.text(ANSWER) if kind == "text" else wire.tool_calls(call)
    assert whole.events is not None
    # Every cut, from no event at all to all but the end markers, and the end markers alone.
    replies = [ended_early(whole, n) for n in range(len(whole.events) - 2)]
    replies.append(without_end_marker(whole))
    for reply in replies:
        with pytest.raises(StreamIncomplete, match="before the provider said it was complete"):
            await streamed(wire, reply, monkeypatch)

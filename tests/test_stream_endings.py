"""How a reply ends decides what the agent does with it, on OpenAI's wire and Anthropic's.

A stream that stops before the provider says it ended (no finish reason, no stop reason, or no
chunk at all) is a failed attempt that Temporal retries: its text is dropped from the screen
and no tool call from it runs. A reply cut by the output token limit (`length`) reaches the user
marked as cut, with what to do, and its cut tool call is not run. A stream that fails midway
falls back to the next model. Arguments that are not JSON reach the next request as an object, so
Anthropic's wire can carry them. A conversation that outgrows a small context is trimmed and
answered. Against the fake providers of `fake_providers.py`, through real LiteLLM.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from app.agent.llm.activity import plan_next_action
from app.agent.llm.client import LLMSettings, complete, litellm_module
from app.agent.models import AgentConfig, Message, PlanInput
from app.agent.stream.events import DropPartialText, LLMAttemptFailed, ToolCallStarted
from app.agent.workflow import AgentWorkflow
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
    use_provider,
    without_end_marker,
)
from tests.test_streamed_providers import shown, turn_events

by_wire = pytest.mark.parametrize("wire", WIRES, ids=lambda wire: wire.name)

ANSWER = "Do not delete the production database. Before any migration, take a backup first."
ROI = WireCall.of("call_roi", "calculate_roi", {"principal": 1000, "rate": 0.05, "years": 3})
FAST_RETRIES = AgentConfig(llm_retry_initial_seconds=0.05, llm_retry_max_seconds=0.1)


@pytest.fixture(scope="module", autouse=True)
async def litellm_loaded() -> None:
    await asyncio.to_thread(litellm_module)


@by_wire
@pytest.mark.timeout(120)
async def test_a_cut_stream_is_retried_its_text_dropped_and_its_tool_call_never_run(
    wire: Wire, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    text, call = wire.text(ANSWER), wire.tool_calls(ROI)
    assert text.events is not None and call.events is not None
    monkeypatch.setenv("LLM_STREAM_BATCH_MS", "20")
    script = InOrder(
        [
            # Turn 1: a text stream that stops early (slowly, so some text is shown), no chunk
            # at all, then the whole answer.
            Reply(text.body, events=text.events, end_after=6, event_delay_seconds=0.1),
            ended_early(text, 0),
            text,
            # Turn 2: a tool call cut inside its arguments, one without its end markers, then
            # an answer: the call never runs.
            ended_early(call, len(call.events) - 4),
            without_end_marker(call),
            wire.text("No tool needed."),
        ]
    )
    async with FakeProvider(script, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(dev_env, FAST_RETRIES) as handle:
            assert await send(handle, "Should I delete the production database?") == ANSWER
            events = await turn_events(dev_env, handle.id)
            assert await send(handle, "What is the ROI of 1000 at 5% for 3 years?") == (
                "No tool needed."
            )
            history = (await handle.query(AgentWorkflow.get_history)).messages
    assert len(server.requests) == 6
    failures = [e for e in events if isinstance(e, LLMAttemptFailed)]
    assert [(f.attempt, f.will_retry) for f in failures] == [(1, True), (2, True)]
    assert all("the stream was cut" in f.error for f in failures)
    assert any(isinstance(e, DropPartialText) for e in events)
    assert ANSWER.startswith(shown(events))
    assert not any(isinstance(e, ToolCallStarted) for e in events)
    # No tool ran, and no call from a cut stream entered the conversation.
    assert [m.role for m in history] == ["user", "assistant", "user", "assistant"]
    assert not any(m.tool_calls for m in history)


@by_wire
async def test_a_reply_cut_by_the_token_limit_is_marked_and_says_what_to_do(
    wire: Wire, monkeypatch: pytest.MonkeyPatch
):
    async with FakeProvider(
        lambda _: wire.cut_by_length("The migration plan: first,"), wire.paths
    ) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url), LLM_MAX_TOKENS="40")
        output = await ActivityEnvironment().run(
            plan_next_action, PlanInput(messages=[Message.user("Plan the migration.")])
        )
    assert output.message.tool_calls == []
    assert output.message.content == (
        "The migration plan: first,\n\n[This reply was cut off at the model's output token "
        "limit (LLM_MAX_TOKENS=40). Ask it to go on, or raise LLM_MAX_TOKENS where the "
        "orchestrator worker runs.]"
    )


@by_wire
async def test_a_tool_call_cut_by_the_token_limit_is_not_run(
    wire: Wire, monkeypatch: pytest.MonkeyPatch
):
    whole = WireCall.of("call_calc", "calculator", {"expression": "15 * 23"})
    cut = WireCall("call_roi", "calculate_roi", '{"principal": 1000, "ra')
    async with FakeProvider(lambda _: wire.cut_by_length("", whole, cut), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        monkeypatch.setenv("LLM_STREAM_TEXT", "1")
        pieces: list[str] = []
        response, _ = await complete(
            [{"role": "user", "content": "hi"}], [], LLMSettings.from_env(), pieces.append
        )
        assert response.choices[0].finish_reason == "length"
        output = await ActivityEnvironment().run(
            plan_next_action, PlanInput(messages=[Message.user("Work it out.")])
        )
    # The call written whole runs; the cut one does not, and the model reads why.
    assert [(c.id, json.loads(c.arguments)) for c in output.message.tool_calls] == [
        ("call_calc", {"expression": "15 * 23"})
    ]
    assert output.message.content is not None
    assert "the call to calculate_roi was not run" in output.message.content


async def test_a_cut_tool_call_alone_becomes_an_answer_marked_as_cut(
    monkeypatch: pytest.MonkeyPatch,
):
    wire = OpenAIWire()
    cut = WireCall("call_roi", "calculate_roi", '{"principal"')
    async with FakeProvider(lambda _: wire.cut_by_length("", cut), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        output = await ActivityEnvironment().run(
            plan_next_action, PlanInput(messages=[Message.user("Work it out.")])
        )
    assert output.message.tool_calls == []
    assert output.message.content == (
        "[This reply was cut off at the model's output token limit; the call to calculate_roi "
        "was not run. Ask it to go on, or raise LLM_MAX_TOKENS where the orchestrator worker "
        "runs.]"
    )


@by_wire
@pytest.mark.parametrize("how", ["connection dropped", "ended early"])
async def test_a_stream_that_fails_midway_falls_back_to_the_next_model(
    wire: Wire, how: str, monkeypatch: pytest.MonkeyPatch
):
    def script(request: ReceivedRequest) -> Reply:
        reply = wire.text(f"{request.model} answers: {ANSWER}", model=request.model)
        assert reply.events is not None
        if request.model.endswith("primary"):
            if how == "ended early":
                return ended_early(reply, len(reply.events) // 2)
            return Reply(reply.body, events=reply.events, cut_after=len(reply.events) // 2)
        return reply

    prefix = wire.model.partition("/")[0]
    pieces: list[str] = []
    restarts: list[str] = []
    async with FakeProvider(script, wire.paths) as server:
        use_provider(
            monkeypatch,
            wire,
            wire.api_base(server.url),
            LLM_MODEL=f"{prefix}/model-primary",
            LLM_FALLBACKS=f"{prefix}/model-backup",
        )
        response, model = await complete(
            [{"role": "user", "content": "hi"}],
            [],
            LLMSettings.from_env(),
            pieces.append,
            lambda: restarts.append("".join(pieces)),
        )
    assert [r.model for r in server.requests] == ["model-primary", "model-backup"]
    assert model == f"{prefix}/model-backup"
    assert response.choices[0].message.content == f"model-backup answers: {ANSWER}"
    # The primary's text was shown, then voided once, before the backup's text.
    [voided] = restarts
    assert voided and f"model-primary answers: {ANSWER}".startswith(voided)
    assert "".join(pieces) == voided + f"model-backup answers: {ANSWER}"


@by_wire
@pytest.mark.timeout(120)
async def test_arguments_that_are_not_json_go_back_to_the_model_on_every_wire(
    wire: Wire, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    bad = WireCall("call_bad", "calculator", '{"expression": "15 * 23"')

    def script(request: ReceivedRequest) -> Reply:
        results = wire.tool_results(request)
        if not results:
            return wire.tool_calls(bad)
        return wire.text(f"The tool said: {results[-1].content}")

    async with FakeProvider(script, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(dev_env, FAST_RETRIES) as handle:
            answer = await send(handle, "What is 15 * 23?")
    assert answer.startswith("The tool said: Error: invalid arguments for calculator:")
    assert "Invalid JSON" in answer
    assert len(server.requests) == 2


@by_wire
async def test_a_conversation_that_outgrows_a_small_context_is_still_answered(
    wire: Wire, time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    n_ctx = 2_048
    long_answer = "word " * 1_500  # about 1,500 tokens: two turns no longer fit

    def script(request: ReceivedRequest) -> Reply:
        # As llama.cpp counts, roughly: a token per four characters of the request.
        tokens = len(json.dumps(request.body)) // 4
        if tokens > n_ctx:
            return wire.error(400, f"Requested tokens ({tokens}) exceed context window of {n_ctx}")
        return wire.text(long_answer.strip())

    monkeypatch.setenv("LLM_STREAM_TEXT", "0")
    async with FakeProvider(script, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(time_skipping_env, FAST_RETRIES) as handle:
            for turn in range(4):
                assert await send(handle, f"Tell me more, part {turn}.") == long_answer.strip()
    refused = [r for r in server.requests if len(json.dumps(r.body)) // 4 > n_ctx]
    assert refused, "the context never filled up: the test proves nothing"
    # Each refusal was followed at once by a shorter request in the same attempt.
    assert len(server.requests) == 4 + len(refused)


@pytest.mark.timeout(120)
async def test_the_usage_of_failed_attempts_is_counted_in_the_turn(
    dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    wire = OpenAIWire()
    text = wire.text(ANSWER)
    assert text.events is not None
    # Turn 1: a cut stream (its usage estimated), then the answer (10 in, 5 out, reported).
    # Turn 2: a whole reply with no text and no call: not retried, but paid for.
    script = InOrder([ended_early(text, 6), text, wire.text("")])
    async with FakeProvider(script, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(dev_env, FAST_RETRIES) as handle:
            assert await send(handle, "Should I delete the production database?") == ANSWER
            failed = await send(handle, "And now?")
            usage = await handle.query(AgentWorkflow.get_usage)
    assert len(server.requests) == 3
    assert "empty answer" in failed
    first, second = usage.turns
    assert (first.usage.calls, first.usage.estimated_calls) == (2, 1)
    assert first.usage.prompt_tokens > 10 and first.usage.completion_tokens > 5
    assert (second.usage.calls, second.usage.prompt_tokens, second.usage.completion_tokens) == (
        1,
        10,
        5,
    )
    assert usage.total.calls == 3

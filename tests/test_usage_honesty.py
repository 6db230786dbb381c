"""Usage as the provider said it, or marked as an estimate; prices the operator gives; one line
per failed fallback attempt.

A stream that carries no usage chunk (llama.cpp, fakellm) leaves LiteLLM to count the tokens: the
call says so (`estimated_by`), and `/usage` and the line under an answer show "≈". Each call
names the model that answered. A model LiteLLM cannot price gets one from
LLM_PRICE_INPUT_PER_MTOK / LLM_PRICE_OUTPUT_PER_MTOK; without them, a cost budget on it is said
to do nothing. Against the fake providers, through real LiteLLM.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from temporalio.testing import ActivityEnvironment

from app.agent.llm.activity import plan_next_action
from app.agent.llm.client import (
    BudgetSettings,
    LLMSettings,
    complete,
    litellm_module,
    response_usage,
)
from app.agent.llm.prices import unpriced_budget_warning
from app.agent.llm.usage import (
    LITELLM_ESTIMATE,
    ConversationUsage,
    LLMUsage,
    TurnUsage,
    UsageTotals,
)
from app.agent.models import Message, PlanInput
from app.cli.chat.reports import format_usage, turn_usage_line
from tests.fake_providers import (
    WIRES,
    Event,
    FakeProvider,
    InOrder,
    OpenAIWire,
    ReceivedRequest,
    Reply,
    Wire,
    use_provider,
)

by_wire = pytest.mark.parametrize("wire", WIRES, ids=lambda wire: wire.name)


@pytest.fixture(scope="module", autouse=True)
async def litellm_loaded() -> None:
    await asyncio.to_thread(litellm_module)


def without_usage(reply: Reply) -> Reply:
    """`reply` streamed with no token counts at all, as llama.cpp's server streams."""
    assert reply.events is not None
    events = []
    for event in reply.events:
        if event.usage:
            continue
        if isinstance(event.data, dict):
            data = {key: value for key, value in event.data.items() if key != "usage"}
            if "message" in data:
                data["message"] = {k: v for k, v in data["message"].items() if k != "usage"}
            event = Event(data, event=event.event)
        events.append(event)
    return Reply(reply.body, events=events)


@by_wire
async def test_a_stream_without_usage_is_counted_as_an_estimate(
    wire: Wire, monkeypatch: pytest.MonkeyPatch
):
    question = [{"role": "user", "content": "hi"}]
    for reply, estimated_by in (
        (wire.text("a short answer"), None),
        (without_usage(wire.text("a short answer")), LITELLM_ESTIMATE),
    ):
        async with FakeProvider(InOrder([reply]), wire.paths) as server:
            use_provider(monkeypatch, wire, wire.api_base(server.url))
            response, model = await complete(question, [], LLMSettings.from_env(), lambda _: None)
        usage = response_usage(response, model)
        assert (usage.estimated_by, usage.model) == (estimated_by, wire.model)
        if estimated_by is None:  # the fakes report 10 in and 5 out
            assert (usage.prompt_tokens, usage.completion_tokens) == (10, 5)
        else:
            assert usage.prompt_tokens > 0 and usage.completion_tokens > 0


def test_estimates_are_marked_in_the_usage_line_and_in_usage():
    totals = UsageTotals()
    totals.add(LLMUsage(prompt_tokens=100, completion_tokens=10, cost_usd=0.001, model="m/a"))
    assert turn_usage_line(TurnUsage(turn=1, usage=totals), 1.0) == (
        "100 in · 10 out · $0.001000 · 1 LLM call · 1.0 s"
    )
    totals.add(
        LLMUsage(prompt_tokens=50, completion_tokens=5, estimated_by=LITELLM_ESTIMATE, model="m/b")
    )
    assert turn_usage_line(TurnUsage(turn=1, usage=totals), 1.0) == (
        "≈150 in · ≈15 out · ≈$0.001000 + 1 unpriced · 2 LLM calls · 1.0 s"
    )
    usage = ConversationUsage(total=totals)
    usage.record(TurnUsage(turn=1, usage=totals, seconds=1.0))
    lines = format_usage(usage)
    assert lines[1].endswith(" · m/a, m/b")  # the models that answered the turn
    assert lines[2] == (
        "  ≈ estimated: the provider sent no usage for 1 of 2 calls; their tokens are LiteLLM's "
        "count, or unknown"
    )
    assert "1 calls have no price: a cost budget (AGENT_MAX_COST_USD" in lines[3]


async def test_a_price_from_the_environment_prices_a_model_litellm_does_not_know(
    monkeypatch: pytest.MonkeyPatch,
):
    wire = OpenAIWire(
        model="openai/local-llama", prompt_tokens=1_000_000, completion_tokens=500_000
    )
    budget = BudgetSettings(max_cost_usd=0.002)
    async with FakeProvider(lambda _: wire.text("hi"), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        monkeypatch.setenv("LLM_STREAM_TEXT", "0")
        warning = unpriced_budget_warning(LLMSettings.from_env(), budget)
        assert warning is not None
        assert warning.startswith("AGENT_MAX_COST_USD ($0.002) cannot limit openai/local-llama")
        unpriced = await ActivityEnvironment().run(
            plan_next_action, PlanInput(messages=[Message.user("hi")])
        )
        monkeypatch.setenv("LLM_PRICE_INPUT_PER_MTOK", "0.5")
        monkeypatch.setenv("LLM_PRICE_OUTPUT_PER_MTOK", "$2")
        priced = await ActivityEnvironment().run(
            plan_next_action, PlanInput(messages=[Message.user("hi")])
        )
        assert unpriced_budget_warning(LLMSettings.from_env(), budget) is None
    assert unpriced.usage.cost_usd is None
    # 1M tokens in at $0.50 and 0.5M out at $2 per million.
    assert priced.usage.cost_usd == pytest.approx(1.5)


async def test_a_failed_fallback_attempt_is_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    wire = OpenAIWire()

    def script(request: ReceivedRequest) -> Reply:
        if request.model == "gpt-primary":
            return wire.error(500, "the primary model is down")
        return wire.text("the backup answers", model=request.model)

    async with FakeProvider(script, wire.paths) as server:
        use_provider(
            monkeypatch,
            wire,
            wire.api_base(server.url),
            LLM_MODEL="openai/gpt-primary",
            LLM_FALLBACKS="openai/gpt-backup",
            LLM_STREAM_TEXT="0",
        )
        with caplog.at_level(logging.WARNING):
            output = await ActivityEnvironment().run(
                plan_next_action, PlanInput(messages=[Message.user("hi")])
            )
    assert output.model == "openai/gpt-backup"
    [record] = [r for r in caplog.records if "Fallback attempt failed" in r.getMessage()]
    assert record.levelname == "WARNING" and record.exc_info is None
    assert "the primary model is down" in record.getMessage()

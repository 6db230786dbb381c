"""What a turn costs: tokens and dollars per call, summed per turn and conversation, and budgets.

The sums, the bounded turn list, continue-as-new and the conversation's own budget run on the
time-skipping server with a scripted LLM that reports fixed usage. Prices come from LiteLLM's
local cost map through the real `plan_next_action`, against the OpenAI-wire fake provider (which
reports `usage` like OpenAI does), fallbacks included. The issue's "done when" runs on the dev
server: `get_usage`, the `temporal workflow list` query on `AgentTokens`, and the operator's
budget (AGENT_MAX_COST_USD) stopping the next message before it reaches the provider.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

import orchestrator_worker
from app.agent.llm.activity import plan_next_action
from app.agent.llm.client import OFFLINE_MODEL, litellm_module
from app.agent.llm.usage import (
    RECENT_TURNS,
    ConversationUsage,
    LLMUsage,
    TurnUsage,
    UsageTotals,
)
from app.agent.models import AgentConfig, Message, PlanInput
from app.agent.tools.catalog import tool_schemas
from app.agent.workflow import AgentWorkflow
from app.cli.chat.session import ChatSession
from app.cli.chat.terminal import Terminal
from app.core.dev_server import find_binary
from app.core.names import AGENT_COST_USD, AGENT_TOKENS, AGENT_TURNS, PROJECT_ROOT
from app.core.setup import (
    ensure_search_attributes,
    missing_search_attributes,
    search_attribute_cli_commands,
    tcld_command,
)
from tests.doubles import AgentHarness, ScriptedLLM, asks, call, real_agent, send
from tests.doubles import tools_then_answer as scripted_tools_then_answer
from tests.fake_providers import (
    FakeProvider,
    OpenAIWire,
    ReceivedRequest,
    Reply,
    WireCall,
    use_provider,
)

# What the scripted LLM reports for every call.
CALL = LLMUsage(prompt_tokens=1000, completion_tokens=100, cached_tokens=200, cost_usd=0.00021)

# The "done when" provider: gpt-4o-mini reporting 1,000 prompt and 100 completion tokens a call.
MINI = OpenAIWire(model="openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=100)


def litellm_price(model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """What `litellm.completion_cost` says a response with this usage costs."""
    litellm = litellm_module()
    response = litellm.ModelResponse(
        model=model.split("/", 1)[1],
        choices=[{"index": 0, "message": {"role": "assistant", "content": "x"}}],
        usage={
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )
    return float(litellm.completion_cost(completion_response=response, model=model))


def calculator_then_answer(wire: OpenAIWire) -> Any:
    """A provider that asks for the calculator at the start of a turn, then answers."""

    def script(request: ReceivedRequest) -> Reply:
        results = wire.tool_results(request)
        if not results:
            return wire.tool_calls(WireCall.of("call_calc", "calculator", {"expression": "15*23"}))
        return wire.text(f"15 * 23 = {results[0].content}")

    return script


# ---- The sums (pure) ----


def test_an_unknown_price_stays_unknown_and_is_never_counted_as_free():
    totals = UsageTotals()
    totals.add(LLMUsage(prompt_tokens=50, completion_tokens=5))  # LiteLLM knows no price
    assert totals.cost_text() == "cost unknown"
    assert totals.summary() == "50 in · 5 out · cost unknown · 1 LLM call"

    totals.add(CALL)
    assert (totals.calls, totals.total_tokens, totals.unpriced_calls) == (2, 1155, 1)
    assert totals.cost_text() == "$0.000210 + 1 unpriced"
    assert (
        totals.summary() == "1,050 in (200 cached) · 105 out · $0.000210 + 1 unpriced · 2 LLM calls"
    )


def test_get_usage_lists_the_recent_turns_and_keeps_the_rest_in_the_total():
    usage = ConversationUsage()
    for number in range(1, RECENT_TURNS + 6):
        turn = TurnUsage(turn=number, update_id=f"message-{number}")
        turn.usage.add(CALL)
        usage.total.add(CALL)
        usage.record(turn)
    assert [turn.turn for turn in usage.turns] == list(range(6, RECENT_TURNS + 6))
    assert usage.earlier_turns == 5
    assert usage.total.calls == RECENT_TURNS + 5
    assert usage.turn_for_update("message-1") is None
    assert usage.turn_for_update(f"message-{RECENT_TURNS + 5}") == usage.turns[-1]


# ---- The workflow's sums and the conversation's own budget (time-skipping server) ----


async def test_usage_is_summed_over_steps_and_parallel_tools_across_continue_as_new(
    time_skipping_env: WorkflowEnvironment,
):
    calc = call("calculator", {"expression": "15 * 23"})
    echo = call("echo", {"message": "hi"})
    llm = ScriptedLLM(scripted_tools_then_answer(calc, echo), usage=CALL)
    harness = AgentHarness(time_skipping_env, llm, AgentConfig(max_turns_per_run=2))
    async with harness.worker():
        handle = await harness.start()
        first_run = (await handle.describe()).run_id
        for number in range(3):
            await handle.execute_update(
                AgentWorkflow.send_message, "Calculate 15 * 23 and echo hi", id=f"message-{number}"
            )
        usage = await handle.query(AgentWorkflow.get_usage)
        latest = await harness.client.get_workflow_handle(handle.id).describe()

    assert latest.run_id != first_run  # the totals crossed a continue-as-new
    # Each turn: one step asking for two tools at once, one step answering.
    assert [(t.turn, t.update_id, t.usage.calls) for t in usage.turns] == [
        (1, "message-0", 2),
        (2, "message-1", 2),
        (3, "message-2", 2),
    ]
    for turn in usage.turns:
        assert (turn.usage.prompt_tokens, turn.usage.completion_tokens) == (2000, 200)
        assert turn.usage.cost_usd == pytest.approx(2 * 0.00021)
    total = usage.total
    assert (total.calls, total.prompt_tokens, total.completion_tokens) == (6, 6000, 600)
    assert (total.cached_tokens, total.unpriced_calls) == (1200, 0)
    assert total.cost_usd == pytest.approx(6 * 0.00021)
    # Kept up to date for list queries, after every turn.
    attributes = latest.typed_search_attributes
    assert attributes.get(AGENT_TURNS) == 3
    assert attributes.get(AGENT_TOKENS) == 6600
    assert attributes.get(AGENT_COST_USD) == pytest.approx(6 * 0.00021)


async def test_the_conversations_budget_stops_the_loop_mid_turn_before_the_next_call(
    time_skipping_env: WorkflowEnvironment,
):
    # Asks for a tool at every step: only the budget ends this turn.
    llm = ScriptedLLM(lambda messages: asks(call("echo", {"message": "again"})), usage=CALL)
    config = AgentConfig(max_total_tokens=2000)
    harness = AgentHarness(time_skipping_env, llm, config)
    async with harness.worker():
        handle = await harness.start()
        answer = await send(handle, "Echo again and again")
        # The conversation stays usable: the next message is answered without a call.
        again = await send(handle, "hello?")
        usage = await handle.query(AgentWorkflow.get_usage)

    # 1,100 tokens after the first call, 2,200 after the second: no third call.
    assert len(llm.inputs) == 2
    assert answer == (
        "I stopped before asking the language model again: this conversation has used 2,200 "
        "tokens ($0.000420) in 2 LLM calls, and its budget is 2,000 tokens "
        "(AgentConfig.max_total_tokens). To go on, start a new conversation (/new) with a "
        "higher AgentConfig.max_total_tokens. Commands such as /usage still work."
    )
    assert again == answer
    assert [turn.usage.calls for turn in usage.turns] == [2, 0]


# ---- Prices from LiteLLM, through the real activity and a fake provider ----


async def test_the_cost_of_a_priced_model_is_litellms_price_for_the_reported_usage(
    monkeypatch: pytest.MonkeyPatch,
):
    wire = OpenAIWire(model="openai/gpt-4o-mini", prompt_tokens=1234, completion_tokens=56)
    async with FakeProvider(lambda request: wire.text("hi"), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        output = await ActivityEnvironment().run(
            plan_next_action, PlanInput(messages=[Message.user("hi")])
        )

    expected = litellm_price("openai/gpt-4o-mini", 1234, 56)
    assert expected > 0
    assert output.usage == LLMUsage(
        prompt_tokens=1234, completion_tokens=56, cost_usd=expected, model="openai/gpt-4o-mini"
    )
    # The figure TEMPORAL_NOTES.md measured: 1,000 in + 100 out = $0.00021.
    assert litellm_price("openai/gpt-4o-mini", 1000, 100) == pytest.approx(0.00021)


async def test_a_fallback_model_is_priced_as_the_model_that_answered(
    monkeypatch: pytest.MonkeyPatch,
):
    wire = OpenAIWire(prompt_tokens=1000, completion_tokens=100, cached_tokens=300)

    def script(request: ReceivedRequest) -> Reply:
        if request.model == "gpt-4o":
            return wire.error(500, "the primary model is down")
        return wire.text("the fallback answers", model=request.model)

    async with FakeProvider(script, wire.paths) as server:
        use_provider(
            monkeypatch,
            wire,
            wire.api_base(server.url),
            LLM_MODEL="openai/gpt-4o",
            LLM_FALLBACKS="openai/gpt-4o-mini",
        )
        output = await ActivityEnvironment().run(
            plan_next_action, PlanInput(messages=[Message.user("hi")])
        )

    assert output.model == "openai/gpt-4o-mini"
    assert (output.usage.prompt_tokens, output.usage.cached_tokens) == (1000, 300)
    assert output.usage.cost_usd is not None
    # Cached prompt tokens cost less: compare with LiteLLM's own per-token prices.
    litellm = litellm_module()
    mini, big = (litellm.model_cost[name] for name in ("gpt-4o-mini", "gpt-4o"))
    assert output.usage.cost_usd == pytest.approx(
        700 * mini["input_cost_per_token"]
        + 300 * mini["cache_read_input_token_cost"]
        + 100 * mini["output_cost_per_token"]
    )
    assert output.usage.cost_usd < 1000 * big["input_cost_per_token"]


async def test_a_model_litellm_has_no_price_for_counts_tokens_and_an_unknown_cost(
    monkeypatch: pytest.MonkeyPatch,
):
    wire = OpenAIWire(model="openai/gpt-test", prompt_tokens=77, completion_tokens=7)
    async with FakeProvider(lambda request: wire.text("hi"), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        output = await ActivityEnvironment().run(
            plan_next_action, PlanInput(messages=[Message.user("hi")])
        )
    assert output.usage == LLMUsage(
        prompt_tokens=77, completion_tokens=7, cost_usd=None, model="openai/gpt-test"
    )


async def test_the_offline_model_reports_realistic_token_counts_and_costs_nothing(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("LLM_MODEL", OFFLINE_MODEL)
    output = await ActivityEnvironment().run(
        plan_next_action, PlanInput(messages=[Message.user("Calculate 15 * 23")])
    )
    litellm = litellm_module()
    [tool_call] = output.message.tool_calls
    # The prompt is the system prompt, the message and the tool schemas.
    assert output.usage.prompt_tokens > litellm.token_counter(
        model="gpt-4o-mini", messages=[], tools=tool_schemas()
    )
    assert output.usage.completion_tokens == litellm.token_counter(
        model="gpt-4o-mini",
        text=json.dumps([[tool_call.name, json.loads(tool_call.arguments)]]),
        count_response_tokens=True,
    )
    assert output.usage.cost_usd == 0.0


async def test_a_bad_budget_setting_is_a_clear_non_retryable_error(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("LLM_MODEL", OFFLINE_MODEL)
    monkeypatch.setenv("AGENT_MAX_COST_USD", "five dollars")
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(plan_next_action, PlanInput(messages=[Message.user("hi")]))
    assert (failure.value.type, failure.value.non_retryable) == ("BadBudgetSetting", True)
    assert (
        failure.value.message
        == "AGENT_MAX_COST_USD must be an amount in US dollars, not 'five dollars'"
    )


# ---- The "done when", on the dev server ----


async def listed(client: Client, query: str, workflow_id: str) -> bool:
    """Whether `temporal workflow list --query` lists the workflow (visibility lags: poll)."""
    temporal = find_binary("temporal")
    assert temporal is not None
    address = client.service_client.config.target_host
    for _ in range(50):
        result = await asyncio.to_thread(
            subprocess.run,
            [temporal, "workflow", "list", "--address", address, "--query", query, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        if workflow_id in result.stdout:
            return True
        await asyncio.sleep(0.2)
    return False


@pytest.mark.e2e  # the temporal CLI
async def test_done_when_usage_list_query_and_the_operators_budget(
    dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    one_call = litellm_price(MINI.model, 1000, 100)
    async with FakeProvider(calculator_then_answer(MINI), MINI.paths) as server:
        use_provider(monkeypatch, MINI, MINI.api_base(server.url))
        monkeypatch.delenv("AGENT_MAX_COST_USD", raising=False)
        monkeypatch.delenv("AGENT_MAX_TOKENS", raising=False)
        async with real_agent(dev_env) as handle:
            assert await send(handle, "Calculate 15 * 23") == "15 * 23 = 345"
            usage = await handle.query(AgentWorkflow.get_usage)
            assert await listed(dev_env.client, "AgentTokens >= 2200", handle.id)
            cost_query = f"AgentCostUSD > {one_call:.6f} AND WorkflowId = '{handle.id}'"
            found = [w.id async for w in dev_env.client.list_workflows(cost_query)]

            # The operator sets a budget below one call's cost: the next message costs nothing.
            monkeypatch.setenv("AGENT_MAX_COST_USD", f"{one_call / 2:.8f}")
            answer = await send(handle, "Calculate 2 + 2")
            after = await handle.query(AgentWorkflow.get_usage)

    assert (usage.total.calls, usage.total.prompt_tokens, usage.total.completion_tokens) == (
        2,
        2000,
        200,
    )
    assert usage.total.cost_usd == pytest.approx(2 * one_call)
    assert found == [handle.id]
    assert len(server.requests) == 2  # none for the second message
    # Streamed: the usage came in the stream's last chunk (`stream_options.include_usage`).
    assert all(request.body["stream"] for request in server.requests)
    assert "AGENT_MAX_COST_USD" in answer
    assert f"budget is ${one_call / 2:.8f}".rstrip("0") in answer
    assert "restart the worker" in answer
    assert after.total == usage.total
    assert after.turns[-1].usage.calls == 0


# ---- The chat client ----


async def test_a_terminal_shows_each_turns_usage_and_usage_shows_the_totals(
    dev_env: WorkflowEnvironment,
):
    out, err = io.StringIO(), io.StringIO()
    terminal = Terminal(io.StringIO(), out, err)
    # A person at a terminal without the live view (TERM=dumb): the lines as they stay.
    terminal.interactive = True
    async with real_agent(dev_env) as handle:
        session = ChatSession(dev_env.client, terminal, web_ui=None, resume_command="client.py")
        session._use(handle.id)
        await session.send("Calculate 15 * 23")
        await session.command("/usage")
        usage = await handle.query(AgentWorkflow.get_usage)

    total = usage.total
    assert total.calls == 2 and total.prompt_tokens > 0 and total.cost_usd == 0.0
    lines = out.getvalue().split("\n")[:-1]
    answer = lines.index("Agent: 15 * 23 = 345")
    note = lines[answer + 1]
    assert note.startswith(f"{total.summary()} · ") and note.endswith(" s")
    assert lines[answer + 2 :] == [
        f"Usage of {handle.id}:",
        f"  total: {total.summary()} in 1 turn",
        f"  turn 1: {usage.turns[0].usage.summary()} · {usage.turns[0].seconds:.1f} s"
        " · offline/agent",  # the model that answered
    ]
    assert err.getvalue() == ""


# ---- Search attributes missing from the namespace ----


def test_the_docs_give_the_search_attribute_commands_setup_uses():
    docs = {path.name: path.read_text() for path in (PROJECT_ROOT / "docs").glob("*.md")}
    for command in search_attribute_cli_commands():
        assert command in docs["architecture.md"]  # setup by hand
    assert tcld_command() in docs["cost.md"]  # Temporal Cloud


@pytest.mark.e2e  # a dev server of its own, and the temporal CLI
async def test_the_search_attribute_cli_commands_register_them_on_a_bare_dev_server():
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=find_binary("temporal"))
    temporal = find_binary("temporal")
    assert temporal is not None
    address = env.client.service_client.config.target_host
    try:
        for command in search_attribute_cli_commands() * 2:  # twice: idempotent here
            result = await asyncio.to_thread(
                subprocess.run,
                [temporal, *command.split()[1:], "--address", address],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert result.returncode == 0, result.stderr
        assert await missing_search_attributes(env.client) == []
    finally:
        await env.shutdown()


@pytest.mark.e2e  # a dev server of its own
async def test_the_orchestrator_worker_refuses_a_namespace_without_the_search_attributes():
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
    )
    try:
        assert await missing_search_attributes(env.client) == [
            "AgentTurns",
            "AgentTokens",
            "AgentCostUSD",
        ]
        with pytest.raises(SystemExit) as refused:
            await orchestrator_worker.main(env.client)
        await ensure_search_attributes(env.client)
        assert await missing_search_attributes(env.client) == []
    finally:
        await env.shutdown()
    assert str(refused.value).startswith(
        "orchestrator worker: namespace default lacks the search attributes AgentTurns, "
        "AgentTokens, AgentCostUSD, so every conversation would stall at its first answer: "
        "register them with `uv run python -m app.core.setup` (on Temporal Cloud: "
        "`tcld namespace search-attributes add --namespace <namespace>.<account> "
        '--sa "AgentTurns=Int"'
    )

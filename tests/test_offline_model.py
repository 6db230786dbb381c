"""The offline model through the real `plan_next_action` activity.

Each README example is checked twice: the first planning call must ask for the right tool with the
right arguments, and the second, given a tool result, must answer from it. The offline model is
LiteLLM's provider `offline`, but `plan_next_action` calls it directly, without
`litellm.acompletion`'s per-call work.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from app.agent.llm import client as llm_client
from app.agent.llm.activity import plan_next_action
from app.agent.llm.client import OFFLINE_MODEL, LLMSettings, choose_model, litellm_module
from app.agent.models import Message, PlanInput, PlanOutput, ToolCall
from app.agent.tools.catalog import tool_schemas


async def plan(messages: list[Message]) -> PlanOutput:
    return await ActivityEnvironment().run(plan_next_action, PlanInput(messages=messages))


def called(output: PlanOutput) -> list[tuple[str, dict[str, Any]]]:
    return [(call.name, json.loads(call.arguments)) for call in output.message.tool_calls]


EXAMPLES = [
    ("Calculate 15 * 23", [("calculator", {"expression": "15 * 23"})]),
    ("What is 2 plus 3 times 4?", [("calculator", {"expression": "2 + 3 * 4"})]),
    ("Echo hello", [("echo", {"message": "hello"})]),
    ("What is my IP address?", [("get_ip", {})]),
    ("What is the stock price of AAPL?", [("stock_price", {"ticker": "AAPL"})]),
    (
        "Calculate the ROI for $10000 invested at 5% for 10 years",
        [("calculate_roi", {"principal": 10000.0, "rate": 5.0, "years": 10.0})],
    ),
    ("Show Jira metrics for project PROJ", [("jira_metrics", {"project": "PROJ"})]),
    (
        "Create a Jira issue in PROJ: the login page is slow",
        [
            (
                "create_jira_issue",
                {
                    "project": "PROJ",
                    "summary": "The login page is slow",
                    "description": "Reported through the agent chat: Create a Jira issue in "
                    "PROJ: the login page is slow",
                    "priority": "Medium",
                },
            )
        ],
    ),
    (
        "open a ticket for ops - the VPN is down, high priority.",
        [
            (
                "create_jira_issue",
                {
                    "project": "OPS",
                    "summary": "The VPN is down",
                    "description": "Reported through the agent chat: open a ticket for ops - "
                    "the VPN is down, high priority.",
                    "priority": "High",
                },
            )
        ],
    ),
    (
        "Calculate 15 * 23 and echo done",
        [("calculator", {"expression": "15 * 23"}), ("echo", {"message": "done"})],
    ),
    (
        "What are the stock prices of AAPL and MSFT?",
        [("stock_price", {"ticker": "AAPL"}), ("stock_price", {"ticker": "MSFT"})],
    ),
    # What a new user tried in the first five minutes (issue 11).
    (
        "What is the stock price of AAPL and what is my IP address?",
        [("stock_price", {"ticker": "AAPL"}), ("get_ip", {})],
    ),
    ("calculate sqrt(2) * pi", [("calculator", {"expression": "sqrt(2) * pi"})]),
    (
        "Calculate 2**10 and echo hi and what is 3+4",
        [
            ("calculator", {"expression": "2**10"}),
            ("echo", {"message": "hi"}),
            ("calculator", {"expression": "3+4"}),
        ],
    ),
    ("what is the stock price of aapl?", [("stock_price", {"ticker": "AAPL"})]),
    (
        "what is my ip address, calculate 2 * 3",
        [("get_ip", {}), ("calculator", {"expression": "2 * 3"})],
    ),
    ("Echo salt and pepper", [("echo", {"message": "salt and pepper"})]),
]


@pytest.mark.parametrize(("message", "expected_calls"), EXAMPLES)
async def test_offline_model_asks_for_the_right_tools(
    message: str, expected_calls: list[tuple[str, dict[str, Any]]]
):
    output = await plan([Message.user(message)])
    assert output.model == OFFLINE_MODEL
    assert output.message.content is None
    assert called(output) == expected_calls
    assert len({call.id for call in output.message.tool_calls}) == len(expected_calls)


TOOL_RESULTS = [
    ("calculator", {"expression": "15 * 23"}, "345", "15 * 23 = 345"),
    ("echo", {"message": "hello"}, "hello", "hello"),
    (
        "get_ip",
        {},
        json.dumps({"hostname": "box", "ip": "10.1.2.3", "addresses": ["10.1.2.3"]}),
        "Your IP address is 10.1.2.3 (host box).",
    ),
    (
        "calculate_roi",
        {"principal": 10000, "rate": 5, "years": 10},
        json.dumps(
            {
                "principal": 10000.0,
                "years": 10.0,
                "final_value": 16288.95,
                "gain": 6288.95,
                "roi_percent": 62.89,
                "rate_interpretation": "5 was read as 5% per year",
            }
        ),
        "grows to $16,288.95: a gain of $6,288.95, ROI 62.89%.",
    ),
    (
        "create_jira_issue",
        {"project": "PROJ", "summary": "The login page is slow"},
        json.dumps(
            {
                "key": "PROJ-124",
                "project": "PROJ",
                "summary": "The login page is slow",
                "priority": "Medium",
                "url": "https://jira.example.invalid/browse/PROJ-124",
                "source": "sample Jira",
            }
        ),
        'I created PROJ-124 in PROJ: "The login page is slow" (priority Medium, '
        "https://jira.example.invalid/browse/PROJ-124; sample Jira).",
    ),
    (
        "create_jira_issue",
        {"project": "PROJ", "summary": "The login page is slow"},
        "Not run: the user denied this call: not now",
        "I did not create the Jira issue: the user denied this call: not now",
    ),
    (
        "stock_price",
        {"ticker": "AAPL"},
        "Error: the stock_price tool is unavailable: finance-nexus-endpoint did not answer",
        "The stock_price tool is unavailable: finance-nexus-endpoint did not answer",
    ),
]


@pytest.mark.parametrize(("tool", "arguments", "result", "expected"), TOOL_RESULTS)
async def test_offline_model_answers_from_tool_results(
    tool: str, arguments: dict[str, Any], result: str, expected: str
):
    call = ToolCall(id="call-1", name=tool, arguments=json.dumps(arguments))
    output = await plan(
        [
            Message.user("question"),
            Message(role="assistant", tool_calls=[call]),
            Message.tool_result(call, result),
        ]
    )
    assert output.message.tool_calls == []
    assert expected in (output.message.content or "")


async def offline_completion(
    monkeypatch: pytest.MonkeyPatch, message: str, streamed: bool
) -> tuple[Any, list[str], dict[str, Any]]:
    """The offline model's response to `message`, the text streamed, and LiteLLM's call."""
    litellm = litellm_module()
    real = litellm.acompletion
    calls: list[dict[str, Any]] = []

    async def acompletion(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await real(**kwargs)

    monkeypatch.setattr(litellm, "acompletion", acompletion)
    texts: list[str] = []
    response, model = await llm_client.complete(
        [{"role": "user", "content": message}],
        tool_schemas(),
        on_text=texts.append if streamed else None,
    )
    monkeypatch.undo()
    [call] = calls
    assert model == call["model"] == OFFLINE_MODEL
    return response, texts, call


@pytest.mark.parametrize("streamed", [False, True])
async def test_offline_model_answers_through_litellm_acompletion(
    streamed: bool, monkeypatch: pytest.MonkeyPatch
):
    # The same path as a real provider: switching models changes no code path.
    monkeypatch.setenv("OFFLINE_MODEL_LATENCY_MS", "50")  # words spread over 50 ms
    response, texts, call = await offline_completion(monkeypatch, "Write a sonnet", streamed)
    assert call.get("stream", False) is streamed
    answer = response.choices[0].message.content
    assert "I'm the offline model" in answer
    if streamed:
        assert len(texts) == len(answer.split()) and "".join(texts) == answer


async def test_with_no_latency_the_offline_model_streams_its_text_in_one_piece(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("OFFLINE_MODEL_LATENCY_MS", "0")
    response, texts, _ = await offline_completion(monkeypatch, "Write a sonnet", streamed=True)
    assert texts == [response.choices[0].message.content]


async def test_a_streamed_offline_answer_counts_the_same_tokens(monkeypatch: pytest.MonkeyPatch):
    for message in ["Write a sonnet", "What is my IP address?"]:
        whole, _, _ = await offline_completion(monkeypatch, message, streamed=False)
        streamed, _, _ = await offline_completion(monkeypatch, message, streamed=True)
        usage = llm_client.response_usage(whole, OFFLINE_MODEL)
        assert usage.prompt_tokens > 100 and usage.completion_tokens > 0
        assert llm_client.response_usage(streamed, OFFLINE_MODEL) == usage
        assert streamed.choices[0].message.tool_calls == whole.choices[0].message.tool_calls


async def test_litellm_still_knows_the_offline_model():
    # Anyone calling LiteLLM directly (or naming it as a fallback) still reaches it.
    response = await litellm_module().acompletion(
        model=OFFLINE_MODEL, messages=[{"role": "user", "content": "Echo hi"}], tools=[]
    )
    assert "offline model" in response.choices[0].message.content


@pytest.mark.parametrize("message", ["Create a Jira issue", "Open a ticket in PROJ"])
async def test_offline_model_asks_what_to_create_instead_of_guessing(message: str):
    output = await plan([Message.user(message)])
    assert output.message.tool_calls == []
    assert (output.message.content or "").startswith("Which project, and what is wrong?")


async def test_offline_model_is_honest_about_what_it_cannot_do():
    output = await plan([Message.user("Write me a sonnet about the sea")])
    answer = output.message.content or ""
    assert answer.startswith("I can't help with that. I'm the offline model")
    assert "Set LLM_MODEL and a provider key for a real LLM" in answer


def test_a_model_without_credentials_falls_back_to_the_offline_model(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    choice = choose_model(LLMSettings(model="openai/gpt-4o-mini"))
    assert choice.model == OFFLINE_MODEL
    assert choice.offline_reason == "openai/gpt-4o-mini needs OPENAI_API_KEY"
    assert "offline model: set LLM_MODEL and a provider key for a real LLM" in choice.describe()


def test_a_model_with_credentials_is_used(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    assert choose_model(LLMSettings(model="anthropic/claude-3-5-haiku-latest")).model == (
        "anthropic/claude-3-5-haiku-latest"
    )


def test_model_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LLM_MODEL", "gemini/gemini-2.0-flash")
    monkeypatch.setenv("LLM_FALLBACKS", "openai/gpt-4o-mini, anthropic/claude-3-5-haiku-latest")
    settings = LLMSettings.from_env()
    assert settings.model == "gemini/gemini-2.0-flash"
    assert settings.fallbacks == ["openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-latest"]


async def test_a_cancelled_planning_call_leaves_the_litellm_warm_up_running(
    monkeypatch: pytest.MonkeyPatch,
):
    # A planning attempt that times out while LiteLLM loads is cancelled; the next attempt must
    # still get LiteLLM, not the cancellation.
    loaded = object()

    def slow_import() -> object:
        time.sleep(0.3)
        return loaded

    monkeypatch.setattr(llm_client, "litellm_module", slow_import)
    llm_client.warm_up.cache_clear()
    try:
        first_attempt = asyncio.ensure_future(llm_client.litellm_ready())
        await asyncio.sleep(0.05)
        first_attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first_attempt
        assert await llm_client.litellm_ready() is loaded
    finally:
        llm_client.warm_up.cache_clear()


async def test_a_multi_part_answer_reads_as_sentences():
    calls = [
        ToolCall(id="c1", name="calculator", arguments='{"expression": "2**10"}'),
        ToolCall(id="c2", name="echo", arguments='{"message": "hi"}'),
        ToolCall(id="c3", name="calculator", arguments='{"expression": "3+4"}'),
    ]
    output = await plan(
        [
            Message.user("Calculate 2**10 and echo hi and what is 3+4"),
            Message(role="assistant", tool_calls=calls),
            Message.tool_result(calls[0], "1024"),
            Message.tool_result(calls[1], "hi"),
            Message.tool_result(calls[2], "7"),
        ]
    )
    assert output.message.content == "2**10 = 1024. Echo: hi. 3+4 = 7."


async def test_an_unknown_ticker_is_said_to_be_unknown():
    from app.core.tool_errors import InvalidToolArguments
    from app.finance.market_data import SampleMarketData

    with pytest.raises(InvalidToolArguments) as raised:
        await SampleMarketData().quote("ZZZZZ")
    assert str(raised.value).startswith("unknown ticker 'ZZZZZ': the sample market data")
    assert (await SampleMarketData().quote("AAPL")).ticker == "AAPL"


@pytest.mark.parametrize("with_system", [True, False])
@pytest.mark.parametrize("with_tools", [True, False])
def test_remembered_token_counts_add_up_to_litellms_count_of_the_whole_prompt(
    with_system: bool, with_tools: bool
):
    from litellm import token_counter

    from app.agent.llm.offline_tokens import prompt_tokens

    call = {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What is 2+2 and my IP? ünïcode ✓"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "4"},
        {"role": "assistant", "content": "2+2 = 4."},
    ]
    if with_system:
        messages.insert(0, {"role": "system", "content": "You are an agent."})
    tools = tool_schemas() if with_tools else []
    schemas: Any = tools or None
    for n in range(1, len(messages) + 1):
        prompt = messages[:n]
        expected = token_counter(model="gpt-4o-mini", messages=prompt, tools=schemas)
        assert prompt_tokens(prompt, tools) == expected

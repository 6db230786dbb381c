"""The real LiteLLM path against local fake providers that speak OpenAI's and Anthropic's APIs.

No test double replaces `plan_next_action` here: LiteLLM builds real HTTP requests from the
catalog's tool schemas and the conversation, sends them to scripted servers on 127.0.0.1, and
parses their tool calls and answers. The tests check what the servers received (tool schemas,
tool results and their ids, keys) and what the user got, for one turn through the activity and
whole conversations through the workflow, with the provider chosen by environment variables only.
They also check that keys and URL credentials never reach the event history, that fallback models
answer when the main model fails, and the exact arguments given to `litellm.acompletion`.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from app.agent.llm.activity import SYSTEM_PROMPT, plan_next_action
from app.agent.llm.client import litellm_module
from app.agent.llm.usage import NO_USAGE, LLMUsage
from app.agent.models import Message, PlanInput, PlanOutput, ToolCall
from app.agent.tools.catalog import TOOLS, tool_schemas
from app.agent.workflow import AgentWorkflow
from tests.doubles import history, real_agent, send
from tests.fake_providers import (
    FAKE_KEY,
    WIRES,
    AnthropicWire,
    FakeProvider,
    OpenAIWire,
    ReceivedRequest,
    Reply,
    Wire,
    WireCall,
    WireToolResult,
    plan_activities,
    use_provider,
)

by_wire = pytest.mark.parametrize("wire", WIRES, ids=lambda wire: wire.name)


def tools_then_answer(wire: Wire, *calls: WireCall) -> Any:
    """A provider that asks for `calls` at the start of a turn, then answers from the results."""

    def script(request: ReceivedRequest) -> Reply:
        results = wire.tool_results(request)
        if not results:
            return wire.tool_calls(*calls)
        return wire.text(" | ".join(f"{r.call_id}={r.content}" for r in results))

    return script


@by_wire
async def test_one_turn_through_plan_next_action_speaks_the_wire_format(
    wire: Wire, monkeypatch: pytest.MonkeyPatch
):
    calc = WireCall.of("call_calc", "calculator", {"expression": "15 * 23"})
    stock = WireCall.of("call_stock", "stock_price", {"ticker": "AAPL"})
    quote = '{"ticker":"AAPL","price":189.5,"currency":"USD","source":"test"}'
    question = Message.user("What is 15 * 23, and what does AAPL cost?")
    async with FakeProvider(tools_then_answer(wire, calc, stock), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        activities = ActivityEnvironment()
        first = await activities.run(plan_next_action, PlanInput(messages=[question]))
        calls = first.message.tool_calls
        results = [Message.tool_result(calls[0], "345"), Message.tool_result(calls[1], quote)]
        second = await activities.run(
            plan_next_action, PlanInput(messages=[question, first.message, *results])
        )

    assert first.model == wire.model
    assert calls == [
        ToolCall(id="call_calc", name="calculator", arguments='{"expression": "15 * 23"}'),
        ToolCall(id="call_stock", name="stock_price", arguments='{"ticker": "AAPL"}'),
    ]
    # The fakes report 10 prompt and 5 completion tokens; LiteLLM has no price for their models.
    assert second == PlanOutput(
        message=Message.assistant(f"call_calc=345 | call_stock={quote}"),
        model=wire.model,
        usage=LLMUsage(prompt_tokens=10, completion_tokens=5, cost_usd=None, model=wire.model),
    )
    # What the provider received: the right endpoint and key, our system prompt, every tool of
    # the catalog with its JSON schema, and the tool results under the ids of their calls.
    assert [(r.method, r.path) for r in server.requests] == [("POST", wire.paths[0])] * 2
    for request in server.requests:
        assert wire.api_key(request) == FAKE_KEY
        assert request.model == wire.model.split("/", 1)[1]
        assert wire.system_prompt(request) == SYSTEM_PROMPT
        assert wire.tool_schemas(request) == tool_schemas()
        assert request.body["tool_choice"] == (
            "auto" if isinstance(wire, OpenAIWire) else {"type": "auto"}
        )
    assert [s["function"]["name"] for s in wire.tool_schemas(server.requests[0])] == list(TOOLS)
    assert wire.tool_results(server.requests[0]) == []
    assert wire.tool_results(server.requests[1]) == [
        WireToolResult("call_calc", "345"),
        WireToolResult("call_stock", quote),
    ]


@by_wire
async def test_a_conversation_through_the_workflow_uses_the_provider_and_local_tools(
    wire: Wire, time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    calc = WireCall.of("call_calc", "calculator", {"expression": "15 * 23"})
    echo = WireCall.of("call_echo", "echo", {"message": "hello"})
    async with FakeProvider(tools_then_answer(wire, calc, echo), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(time_skipping_env) as handle:
            answer = await send(handle, "Calculate 15 * 23 and echo hello")
            messages = await history(handle)
            status = await handle.query(AgentWorkflow.get_status)

    assert answer == "call_calc=345 | call_echo=hello"
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert messages[1].tool_calls == [
        ToolCall(id="call_calc", name="calculator", arguments='{"expression": "15 * 23"}'),
        ToolCall(id="call_echo", name="echo", arguments='{"message": "hello"}'),
    ]
    assert status.model == wire.model
    assert len(server.requests) == 2
    assert all(wire.tool_schemas(r) == tool_schemas() for r in server.requests)
    assert wire.tool_results(server.requests[1]) == [
        WireToolResult("call_calc", "345"),
        WireToolResult("call_echo", "hello"),
    ]
    assert [a.attempt for a in await plan_activities(handle)] == [1, 1]


async def test_the_provider_is_chosen_by_the_environment_at_each_call(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    openai, anthropic = OpenAIWire(), AnthropicWire()
    calc = WireCall.of("call_calc", "calculator", {"expression": "2 ** 10"})
    async with (
        FakeProvider(tools_then_answer(openai, calc), openai.paths) as openai_server,
        FakeProvider(lambda r: anthropic.text("anthropic here"), anthropic.paths) as claude_server,
    ):
        async with real_agent(time_skipping_env) as handle:
            use_provider(monkeypatch, openai, openai.api_base(openai_server.url))
            first = await send(handle, "What is 2 ** 10?")
            use_provider(monkeypatch, anthropic, anthropic.api_base(claude_server.url))
            second = await send(handle, "Who are you?")
            status = await handle.query(AgentWorkflow.get_status)

    assert (first, second) == ("call_calc=1024", "anthropic here")
    assert status.model == anthropic.model
    assert len(openai_server.requests) == 2
    # Anthropic received the whole conversation, OpenAI's turn included, in its own format.
    [request] = claude_server.requests
    assert request.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What is 2 ** 10?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_calc",
                    "name": "calculator",
                    "input": {"expression": "2 ** 10"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_calc", "content": "1024"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "call_calc=1024"}]},
        {"role": "user", "content": [{"type": "text", "text": "Who are you?"}]},
    ]


@by_wire
async def test_keys_and_url_credentials_never_reach_the_event_history(
    wire: Wire, time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    basic_token = base64.b64encode(b"user:pass-SECRET").decode()
    echo = WireCall.of("call_echo", "echo", {"message": "hi"})
    answer_turns = tools_then_answer(wire, echo)

    def script(request: ReceivedRequest) -> Reply:
        if request.body["messages"][-1]["content"] in (
            "break",
            [{"type": "text", "text": "break"}],
        ):
            # A careless provider (or proxy) that echoes every secret it was sent.
            return wire.error(
                401,
                f"Incorrect API key provided: {FAKE_KEY}. You called {api_base} with "
                f"Authorization: {request.headers.get('authorization')} (password pass-SECRET)",
            )
        return answer_turns(request)

    async with FakeProvider(script, wire.paths) as server:
        api_base = wire.api_base(server.url.replace("http://", "http://user:pass-SECRET@"))
        use_provider(monkeypatch, wire, api_base)
        async with real_agent(time_skipping_env) as handle:
            first = await send(handle, "echo hi")
            failed = await send(handle, "break")
            third = await send(handle, "echo hi")
            events = (await handle.fetch_history()).to_json()

    assert (first, third) == ("call_echo=hi", "call_echo=hi")
    assert failed.startswith(
        "Sorry, I could not get an answer from the language model: "
        "the LLM provider rejected the API key ("
    )
    assert "[redacted]" in failed
    # The credentials went to the server, as a Basic auth header; the key as the provider's own
    # header (for OpenAI, the Basic header takes the Authorization header, as httpx would do).
    assert {r.headers.get("authorization") for r in server.requests} == {f"Basic {basic_token}"}
    if isinstance(wire, AnthropicWire):
        assert {wire.api_key(r) for r in server.requests} == {FAKE_KEY}
    for secret in (FAKE_KEY, "pass-SECRET", basic_token, "user:"):
        assert secret not in events
        assert secret not in failed
    assert [(a.failure_type, a.non_retryable) for a in await plan_activities(handle)] == [
        (None, False),
        (None, False),
        ("LLMAuthenticationError", True),
        (None, False),
        (None, False),
    ]


@pytest.mark.parametrize("primary_status", [None, 500, 429])
async def test_a_fallback_model_answers_when_the_main_model_fails(
    primary_status: int | None, monkeypatch: pytest.MonkeyPatch
):
    wire = OpenAIWire()

    def script(request: ReceivedRequest) -> Reply:
        if request.model == "gpt-primary" and primary_status is not None:
            return wire.error(primary_status, "the primary model is down")
        return wire.text(f"{request.model} answers", model=request.model)

    async with FakeProvider(script, wire.paths) as server:
        use_provider(
            monkeypatch,
            wire,
            wire.api_base(server.url),
            LLM_MODEL="openai/gpt-primary",
            LLM_FALLBACKS="openai/gpt-backup, openai/gpt-spare",
        )
        output = await ActivityEnvironment().run(
            plan_next_action, PlanInput(messages=[Message.user("hi")])
        )

    expected = "gpt-primary" if primary_status is None else "gpt-backup"
    assert output == PlanOutput(
        message=Message.assistant(f"{expected} answers"),
        model=f"openai/{expected}",
        usage=LLMUsage(
            prompt_tokens=10, completion_tokens=5, cost_usd=None, model=f"openai/{expected}"
        ),
    )
    # One request per model: LiteLLM falls back without retrying (num_retries=0).
    tried = ["gpt-primary"] if primary_status is None else ["gpt-primary", "gpt-backup"]
    assert [r.model for r in server.requests] == tried
    assert server.requests[-1].body["messages"] == server.requests[0].body["messages"]
    assert wire.tool_schemas(server.requests[-1]) == tool_schemas()


@pytest.mark.parametrize(
    ("status", "message", "error_type", "non_retryable", "summary"),
    [
        (
            401,
            "Incorrect API key provided: sk-wrong.",
            "LLMAuthenticationError",
            True,
            "the LLM provider rejected the API key",
        ),
        (
            429,
            "Rate limit reached.",
            "LLMRateLimited",
            False,
            "the LLM provider is rate limiting us",
        ),
        (500, "Oops.", "LLMServerError", False, "the LLM provider had a server error"),
    ],
)
async def test_when_every_model_fails_the_last_error_decides_whether_to_retry(
    status: int,
    message: str,
    error_type: str,
    non_retryable: bool,
    summary: str,
    monkeypatch: pytest.MonkeyPatch,
):
    # LiteLLM then raises a plain Exception; a bad key must still not be retried by Temporal.
    wire = OpenAIWire()
    async with FakeProvider(lambda request: wire.error(status, message), wire.paths) as server:
        use_provider(
            monkeypatch,
            wire,
            wire.api_base(server.url),
            LLM_MODEL="openai/gpt-primary",
            LLM_FALLBACKS="openai/gpt-backup",
        )
        with pytest.raises(ApplicationError) as failure:
            await ActivityEnvironment().run(
                plan_next_action, PlanInput(messages=[Message.user("hi")])
            )

    assert (failure.value.type, failure.value.non_retryable) == (error_type, non_retryable)
    assert failure.value.message.startswith(f"{summary} (litellm.")
    assert "All fallback attempts failed" in failure.value.message
    assert [r.model for r in server.requests] == ["gpt-primary", "gpt-backup"]


def chat_response(text: str) -> Any:
    """A LiteLLM response with one text answer, as `acompletion` returns it."""
    return litellm_module().ModelResponse(
        choices=[
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ]
    )


def record_llm_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace `litellm.acompletion` with one that answers "ok"; the list gets each call's
    arguments."""
    received: list[dict[str, Any]] = []

    async def acompletion(**kwargs: Any) -> Any:
        received.append(kwargs)
        return chat_response("ok")

    monkeypatch.setattr(litellm_module(), "acompletion", acompletion)
    return received


async def test_plan_next_action_gives_acompletion_every_setting(monkeypatch: pytest.MonkeyPatch):
    received = record_llm_calls(monkeypatch)
    use_provider(
        monkeypatch,
        OpenAIWire(),
        "https://user:pass-SECRET@proxy.example:8443/v1",
        LLM_API_KEY="sk-proxy-key",
        LLM_TIMEOUT_SECONDS="12.5",
        LLM_TEMPERATURE="0.2",
        LLM_MAX_TOKENS="256",
        LLM_FALLBACKS="openai/gpt-backup, anthropic/claude-test",
    )
    history = [Message.user("hi"), Message.assistant("hello"), Message.user("15 * 23?")]
    output = await ActivityEnvironment().run(plan_next_action, PlanInput(messages=history))

    assert output == PlanOutput(
        message=Message.assistant("ok"),
        model="openai/gpt-test",
        # The stand-in for acompletion reports no usage: the call says so.
        usage=LLMUsage(estimated_by=NO_USAGE, model="openai/gpt-test"),
    )
    assert received == [
        {
            "model": "openai/gpt-test",
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "15 * 23?"},
            ],
            "tools": tool_schemas(),
            "tool_choice": "auto",
            "timeout": 12.5,
            "num_retries": 0,
            # The credentials leave the URL for a header: LiteLLM's transport refuses both.
            "api_base": "https://proxy.example:8443/v1",
            "extra_headers": {
                "Authorization": "Basic " + base64.b64encode(b"user:pass-SECRET").decode()
            },
            "api_key": "sk-proxy-key",
            "temperature": 0.2,
            "max_tokens": 256,
            "fallbacks": ["openai/gpt-backup", "anthropic/claude-test"],
        }
    ]


async def test_plan_next_action_leaves_unset_settings_to_litellm(monkeypatch: pytest.MonkeyPatch):
    received = record_llm_calls(monkeypatch)
    use_provider(monkeypatch, OpenAIWire(), api_base=None)
    await ActivityEnvironment().run(plan_next_action, PlanInput(messages=[Message.user("hi")]))

    assert received == [
        {
            "model": "openai/gpt-test",
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "hi"},
            ],
            "tools": tool_schemas(),
            "tool_choice": "auto",
            "timeout": 60.0,
            "num_retries": 0,
        }
    ]


# ---- Trimming fits the model that will answer ----

# Three earlier turns of about 10,000 tokens each: too long together for the offline model's
# 32,000-token context, short enough for gpt-4o-mini's 128,000.
LONG_TURNS = [
    message
    for n in range(3)
    for message in (Message.user(f"turn {n}: " + "hello " * 10_000), Message.assistant("ok"))
]


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param({}, id="offline-model-answers-for-a-model-without-a-key"),
        pytest.param(
            {"OPENAI_API_KEY": FAKE_KEY, "LLM_FALLBACKS": "offline/agent"},
            id="a-fallback-with-a-smaller-context",
        ),
    ],
)
async def test_trimming_fits_the_smallest_context_of_the_models_that_may_answer(
    variables: dict[str, str], monkeypatch: pytest.MonkeyPatch
):
    received = record_llm_calls(monkeypatch)
    use_provider(monkeypatch, OpenAIWire(), api_base=None, LLM_MODEL="openai/gpt-4o-mini")
    monkeypatch.delenv("OPENAI_API_KEY")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    history = [*LONG_TURNS, Message.user("and now?")]
    await ActivityEnvironment().run(plan_next_action, PlanInput(messages=history))

    [call] = received
    # The oldest turn is dropped, whole; the two newest fit.
    assert call["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        *(m.to_chat() for m in history[2:]),
    ]


async def test_a_model_with_a_large_context_gets_every_turn(monkeypatch: pytest.MonkeyPatch):
    received = record_llm_calls(monkeypatch)
    use_provider(monkeypatch, OpenAIWire(), api_base=None, LLM_MODEL="openai/gpt-4o-mini")
    history = [*LONG_TURNS, Message.user("and now?")]
    await ActivityEnvironment().run(plan_next_action, PlanInput(messages=history))

    [call] = received
    assert call["model"] == "openai/gpt-4o-mini"
    assert len(call["messages"]) == 1 + len(history)

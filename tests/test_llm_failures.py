"""What the agent does when the LLM fails or talks nonsense, against real LiteLLM and fake servers.

Provider errors are mapped to Temporal's retry policy: transient ones (rate limit, server error,
timeout, a refused connection) are retried by Temporal, each attempt counted in the event
history, until the provider recovers and the turn completes; permanent ones (a bad key, a bad
request, a conversation too long for the context window) fail at once, with exactly one request,
and the user reads what went wrong while the conversation stays usable. Garbage from the model
(an unknown tool, arguments that are not JSON or miss a field) goes back to it as a tool result,
and a model that never stops asking for tools is stopped by the step bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from app.agent.llm.activity import MAX_REPLY_BYTES, plan_next_action
from app.agent.llm.client import LLMSettings, litellm_module
from app.agent.llm.errors import MAX_RETRY_AFTER_SECONDS, provider_error
from app.agent.llm.tool_arguments import is_json_object
from app.agent.models import AgentConfig, Message, PlanInput
from app.agent.workflow import AgentWorkflow
from tests.doubles import real_agent, send
from tests.fake_providers import (
    FAKE_KEY,
    AnthropicWire,
    FakeProvider,
    InOrder,
    OpenAIWire,
    PlanActivity,
    ReceivedRequest,
    Reply,
    Wire,
    WireCall,
    WireToolResult,
    plan_activities,
    unused_port,
    use_provider,
)

# Retries fast enough for a test; the backoff is the production code's, only shorter.
FAST_RETRIES = AgentConfig(llm_retry_initial_seconds=0.05, llm_retry_max_seconds=0.1)

OPENAI, ANTHROPIC = OpenAIWire(), AnthropicWire()

SORRY = "Sorry, I could not get an answer from the language model: "

# ---- provider_error, unit by unit ----

Make = Callable[[Any], Exception]
_RESPONSE = httpx.Response(403, request=httpx.Request("POST", "http://127.0.0.1/v1"))


@pytest.fixture(autouse=True)
def no_text_streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake servers speak the providers' non-streaming wire only (not SSE): these tests
    check the error mapping of the plain call, so the activity makes it without streaming."""
    monkeypatch.setenv("LLM_STREAM_TEXT", "0")


def _refused(litellm: Any) -> Exception:
    err = litellm.InternalServerError(message="Connection error.", llm_provider="openai", model="m")
    err.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    return err


PROVIDER_ERRORS: list[tuple[str, Make, str, bool, str]] = [
    (
        "authentication",
        lambda m: m.AuthenticationError(message="bad key", llm_provider="openai", model="m"),
        "LLMAuthenticationError",
        False,
        "the LLM provider rejected the API key",
    ),
    (
        "permission",
        lambda m: m.PermissionDeniedError(
            message="no", llm_provider="openai", model="m", response=_RESPONSE
        ),
        "LLMPermissionDenied",
        False,
        "the LLM provider denied access to this model",
    ),
    (
        "context window (a bad request)",
        lambda m: m.ContextWindowExceededError(message="long", model="m", llm_provider="openai"),
        "LLMContextWindowExceeded",
        False,
        "the conversation is too long for the model's context window",
    ),
    (
        "content policy (a bad request)",
        lambda m: m.ContentPolicyViolationError(message="no", model="m", llm_provider="openai"),
        "LLMContentPolicy",
        False,
        "the LLM provider refused the request under its content policy",
    ),
    (
        "model not found",
        lambda m: m.NotFoundError(message="no model", model="m", llm_provider="openai"),
        "LLMModelNotFound",
        False,
        "the LLM provider does not know this model",
    ),
    (
        "bad request",
        lambda m: m.BadRequestError(message="bad", model="m", llm_provider="openai"),
        "LLMBadRequest",
        False,
        "the LLM provider rejected the request as invalid",
    ),
    (
        "rate limit",
        lambda m: m.RateLimitError(message="slow down", llm_provider="openai", model="m"),
        "LLMRateLimited",
        True,
        "the LLM provider is rate limiting us",
    ),
    (
        "timeout",
        lambda m: m.Timeout(message="too slow", model="m", llm_provider="openai"),
        "LLMTimeout",
        True,
        "the LLM provider did not answer in time",
    ),
    (
        "connection",
        lambda m: m.APIConnectionError(message="refused", llm_provider="openai", model="m"),
        "LLMConnectionError",
        True,
        "cannot connect to the LLM provider",
    ),
    (
        "refused connection reported as a server error",
        _refused,
        "LLMConnectionError",
        True,
        "cannot connect to the LLM provider",
    ),
    (
        "unavailable",
        lambda m: m.ServiceUnavailableError(message="later", llm_provider="openai", model="m"),
        "LLMUnavailable",
        True,
        "the LLM provider is unavailable",
    ),
    (
        "server error",
        lambda m: m.InternalServerError(message="boom", llm_provider="openai", model="m"),
        "LLMServerError",
        True,
        "the LLM provider had a server error",
    ),
    (
        "other API error",
        lambda m: m.APIError(status_code=529, message="busy", llm_provider="openai", model="m"),
        "LLMServerError",
        True,
        "the LLM provider returned an error",
    ),
    (
        "every fallback failed, the last with a bad key",
        lambda m: Exception(
            "litellm.AuthenticationError: AuthenticationError: OpenAIException - bad key. "
            "All fallback attempts failed. Enable verbose logging for details."
        ),
        "LLMAuthenticationError",
        False,
        "the LLM provider rejected the API key",
    ),
    (
        "every fallback failed, the last with a context window error",
        lambda m: Exception(
            "litellm.ContextWindowExceededError: litellm.BadRequestError: too long. "
            "All fallback attempts failed."
        ),
        "LLMContextWindowExceeded",
        False,
        "the conversation is too long for the model's context window",
    ),
    (
        "every fallback failed, the last rate limited",
        lambda m: Exception("litellm.RateLimitError: slow down. All fallback attempts failed."),
        "LLMRateLimited",
        True,
        "the LLM provider is rate limiting us",
    ),
    (
        "not from LiteLLM",
        lambda m: ValueError("litellm.AuthenticationError: a lookalike"),
        "LLMError",
        True,
        "the LLM call failed",
    ),
    (
        "an unknown LiteLLM name",
        lambda m: Exception("litellm.NoSuchError: odd"),
        "LLMError",
        True,
        "the LLM call failed",
    ),
]


@pytest.mark.parametrize(
    ("make", "error_type", "retryable", "summary"),
    [pytest.param(*case[1:], id=case[0]) for case in PROVIDER_ERRORS],
)
def test_provider_error_maps_litellm_exceptions_to_retry_decisions(
    make: Make, error_type: str, retryable: bool, summary: str
):
    err = make(litellm_module())
    error = provider_error(err, LLMSettings(model="openai/m"))
    assert type(error) is ApplicationError
    assert (error.type, error.non_retryable) == (error_type, not retryable)
    assert error.message == f"{summary} ({err})"


def test_provider_error_redacts_keys_and_url_credentials(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-12345")
    settings = LLMSettings(
        model="openai/m", api_key="sk-settings-key", api_base="http://bob:hunter2-pw@proxy/v1"
    )
    err = litellm_module().AuthenticationError(
        message="keys sk-env-key-12345 and sk-settings-key, at http://bob:hunter2-pw@proxy/v1, "
        "password hunter2-pw, header Basic Ym9iOmh1bnRlcjItcHc=, elsewhere ftp://u:p@host",
        llm_provider="openai",
        model="m",
    )
    assert provider_error(err, settings).message == (
        "the LLM provider rejected the API key (litellm.AuthenticationError: keys [redacted] and "
        "[redacted], at http://[redacted]@proxy/v1, password [redacted], header Basic "
        "[redacted], elsewhere ftp://[redacted]@host)"
    )


# ---- Transient failures: retried by Temporal until the provider recovers ----


def recovers_after(wire: Wire, *failures: Reply) -> list[Reply]:
    """Replies that fail as given, then answer "recovered"."""
    return [*failures, wire.text("recovered")]


def late(wire: Wire) -> Reply:
    """A good answer that arrives long after the client's timeout (1 s in these tests)."""
    return Reply(wire.text("too late").body, delay_seconds=3.0)


RETRYABLE = [
    pytest.param(
        OPENAI,
        recovers_after(OPENAI, *[OPENAI.error(429, "Rate limit reached for requests.")] * 2),
        "LLMRateLimited",
        id="openai-429",
    ),
    pytest.param(
        ANTHROPIC,
        recovers_after(ANTHROPIC, *[ANTHROPIC.error(429, "Number of requests too high.")] * 2),
        "LLMRateLimited",
        id="anthropic-429",
    ),
    pytest.param(
        OPENAI,
        recovers_after(OPENAI, *[OPENAI.error(500, "The server had an error.")] * 2),
        "LLMServerError",
        id="openai-500",
    ),
    pytest.param(
        OPENAI,
        recovers_after(OPENAI, OPENAI.error(503, "The engine is currently overloaded.")),
        "LLMUnavailable",
        id="openai-503",
    ),
    pytest.param(
        ANTHROPIC,
        recovers_after(ANTHROPIC, *[ANTHROPIC.error(500, "Internal server error.")] * 2),
        "LLMServerError",
        id="anthropic-500",
    ),
    pytest.param(
        ANTHROPIC,
        recovers_after(ANTHROPIC, *[ANTHROPIC.error(529, "Overloaded")] * 2),
        "LLMServerError",
        id="anthropic-529-overloaded",
    ),
    pytest.param(OPENAI, recovers_after(OPENAI, late(OPENAI)), "LLMTimeout", id="openai-timeout"),
    pytest.param(
        ANTHROPIC, recovers_after(ANTHROPIC, late(ANTHROPIC)), "LLMTimeout", id="anthropic-timeout"
    ),
]


_FAILED_ATTEMPT = re.compile(r"LLM call failed \((\w+), (not retried|will retry[^)]*)\): ")


def failed_attempts(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, bool]]:
    """(attempt, error type, non-retryable) of every failed attempt the worker logged; checks
    that each is one line, with no traceback."""
    failed = []
    for record in caplog.records:
        if record.name != "temporalio.activity" or record.levelno < logging.WARNING:
            continue
        assert record.exc_info is None, f"a traceback in the worker's log: {record.getMessage()}"
        assert "\n" not in record.getMessage()
        if match := _FAILED_ATTEMPT.match(record.getMessage()):
            attempt = record.__dict__["temporal_activity"]["attempt"]
            failed.append((attempt, match[1], match[2] == "not retried"))
    return failed


@pytest.mark.parametrize(("wire", "replies", "error_type"), RETRYABLE)
async def test_transient_failures_are_retried_by_temporal_until_the_turn_completes(
    wire: Wire,
    replies: list[Reply],
    error_type: str,
    time_skipping_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    async with FakeProvider(InOrder(replies), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url), LLM_TIMEOUT_SECONDS="1")
        async with real_agent(time_skipping_env, FAST_RETRIES) as handle:
            answer = await send(handle, "hello")

    assert answer == "recovered"
    # Each attempt was one request (LiteLLM did not retry); Temporal retried the activity, and
    # its history counts the attempts.
    attempts = len(replies)
    assert len(server.requests) == attempts
    assert [a.attempt for a in await plan_activities(handle)] == [attempts]
    assert failed_attempts(caplog) == [(n, error_type, False) for n in range(1, attempts)]


async def test_the_history_names_the_error_that_caused_each_retry(
    dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    # The dev server, unlike the time-skipping one, records the last attempt's failure.
    wire = OPENAI
    replies = [wire.error(429, "slow down"), wire.error(500, "oops"), wire.text("recovered")]
    async with FakeProvider(InOrder(replies), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(dev_env, FAST_RETRIES) as handle:
            answer = await send(handle, "hello")

    assert answer == "recovered"
    assert len(server.requests) == 3
    assert await plan_activities(handle) == [
        PlanActivity(
            attempt=3, last_failure_type="LLMServerError", failure_type=None, non_retryable=False
        )
    ]


async def _pending_attempt(handle: WorkflowHandle[Any, Any], at_least: int) -> tuple[int, str]:
    """Wait until the pending `plan_next_action` has reached attempt `at_least`."""
    async with asyncio.timeout(10):
        while True:
            pending = (await handle.describe()).raw_description.pending_activities
            if pending and pending[0].attempt >= at_least:
                return pending[0].attempt, pending[0].last_failure.message
            await asyncio.sleep(0.05)


async def test_an_unreachable_provider_is_retried_until_it_listens(
    time_skipping_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    wire = OPENAI
    port = unused_port()
    use_provider(monkeypatch, wire, wire.api_base(f"http://127.0.0.1:{port}"))
    async with real_agent(time_skipping_env, FAST_RETRIES) as handle:
        update = await handle.start_update(
            AgentWorkflow.send_message, "hello", wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        attempt, last_failure = await _pending_attempt(handle, at_least=3)
        async with FakeProvider(lambda r: wire.text("listening now"), wire.paths, port) as server:
            answer = await update.result()

    assert answer == "listening now"
    assert last_failure.startswith("cannot connect to the LLM provider (litellm.")
    assert len(server.requests) == 1
    [activity] = await plan_activities(handle)
    assert activity.attempt >= attempt >= 3
    assert activity.failure_type is None
    assert failed_attempts(caplog) == [
        (n, "LLMConnectionError", False) for n in range(1, activity.attempt)
    ]


# ---- Permanent failures: one request, an answer that names the problem, a usable conversation ----

NON_RETRYABLE: list[Any] = [
    pytest.param(
        OPENAI,
        OPENAI.error(401, f"Incorrect API key provided: {FAKE_KEY}."),
        "LLMAuthenticationError",
        "the LLM provider rejected the API key",
        id="openai-401",
    ),
    pytest.param(
        OPENAI,
        OPENAI.error(400, "Invalid value for 'tool_choice'."),
        "LLMBadRequest",
        "the LLM provider rejected the request as invalid",
        id="openai-400",
    ),
    pytest.param(
        OPENAI,
        OPENAI.error(
            400,
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 130000 tokens.",
            code="context_length_exceeded",
        ),
        "LLMContextWindowExceeded",
        "the conversation is too long for the model's context window",
        id="openai-context-window",
    ),
    pytest.param(
        ANTHROPIC,
        ANTHROPIC.error(401, "invalid x-api-key"),
        "LLMAuthenticationError",
        "the LLM provider rejected the API key",
        id="anthropic-401",
    ),
    pytest.param(
        ANTHROPIC,
        ANTHROPIC.error(400, "messages: at least one message is required"),
        "LLMBadRequest",
        "the LLM provider rejected the request as invalid",
        id="anthropic-400",
    ),
    pytest.param(
        ANTHROPIC,
        ANTHROPIC.error(400, "prompt is too long: 208000 tokens > 200000 maximum"),
        "LLMContextWindowExceeded",
        "the conversation is too long for the model's context window",
        id="anthropic-context-window",
    ),
]


# What real servers send that is not OpenAI's or Anthropic's own error format: FastAPI's
# `{"detail": ...}` (llama-cpp-python, vLLM), a proxy's plain text, llama.cpp's template error.
FORBIDDEN = "the LLM provider denied access to this model"
INVALID = "the LLM provider rejected the request as invalid"
NON_RETRYABLE += [
    pytest.param(
        OPENAI,
        OPENAI.error(403, "Project lacks access."),
        "LLMPermissionDenied",
        FORBIDDEN,
        id="openai-403",
    ),
    pytest.param(
        OPENAI,
        Reply({"detail": "Invalid API Key"}, status=403),
        "LLMPermissionDenied",
        FORBIDDEN,
        id="openai-wire-403-fastapi",
    ),
    pytest.param(
        OPENAI,
        Reply("Forbidden", status=403),
        "LLMPermissionDenied",
        FORBIDDEN,
        id="openai-wire-403-proxy-text",
    ),
    pytest.param(
        ANTHROPIC,
        ANTHROPIC.error(403, "no access", code="permission_error"),
        "LLMPermissionDenied",
        FORBIDDEN,
        id="anthropic-403",
    ),
    pytest.param(
        OPENAI,
        Reply({"detail": [{"loc": ["body", "messages"], "msg": "Field required"}]}, status=422),
        "LLMBadRequest",
        INVALID,
        id="openai-wire-422-fastapi",
    ),
    pytest.param(
        ANTHROPIC,
        ANTHROPIC.error(422, "unprocessable"),
        "LLMBadRequest",
        INVALID,
        id="anthropic-wire-422",
    ),
    pytest.param(
        OPENAI,
        OPENAI.error(500, "'dict object' has no attribute 'content'"),
        "LLMChatTemplateError",
        "the model server cannot format this conversation with the model's chat template",
        id="llama-cpp-template-500",
    ),
    pytest.param(
        OPENAI,
        OPENAI.text(""),
        "LLMEmptyAnswer",
        "the LLM returned an empty answer; try rephrasing the request.",
        id="openai-empty-answer",
    ),
    pytest.param(
        ANTHROPIC,
        ANTHROPIC._message([], "end_turn", None),
        "LLMEmptyAnswer",
        "the LLM returned an empty answer; try rephrasing the request.",
        id="anthropic-empty-answer",
    ),
    pytest.param(
        OPENAI,
        OPENAI.text("  \n "),
        "LLMEmptyAnswer",
        "the LLM returned an empty answer; try rephrasing the request.",
        id="openai-blank-answer",
    ),
    pytest.param(
        OPENAI,
        OPENAI.text("x" * (MAX_REPLY_BYTES + 1)),
        "LLMReplyTooLarge",
        "the LLM's reply is too large (262,",
        id="reply-over-the-size-limit",
    ),
]


@pytest.mark.parametrize(("wire", "failure", "error_type", "summary"), NON_RETRYABLE)
async def test_permanent_failures_are_not_retried_and_the_user_is_told(
    wire: Wire,
    failure: Reply,
    error_type: str,
    summary: str,
    time_skipping_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    async with FakeProvider(InOrder([failure, wire.text("fixed")]), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(time_skipping_env, FAST_RETRIES) as handle:
            answer = await send(handle, "hello")
            requests_for_the_failed_turn = len(server.requests)
            next_answer = await send(handle, "and now?")

    assert answer.startswith(f"{SORRY}{summary}")
    assert FAKE_KEY not in answer
    assert requests_for_the_failed_turn == 1
    # One line in the worker's log, and no traceback.
    assert failed_attempts(caplog) == [(1, error_type, True)]
    assert next_answer == "fixed"
    assert await plan_activities(handle) == [
        PlanActivity(
            attempt=1, last_failure_type=None, failure_type=error_type, non_retryable=True
        ),
        PlanActivity(attempt=1, last_failure_type=None, failure_type=None, non_retryable=False),
    ]


# ---- Garbage from the model: told in a tool result, and bounded ----

TOOL_NAMES = "calculator, echo, jira_metrics, get_ip, create_jira_issue, stock_price, calculate_roi"


@pytest.mark.parametrize(
    ("bad_call", "error"),
    [
        pytest.param(
            WireCall("call_bad", "launch_rockets", "{}"),
            f"Error: there is no tool named 'launch_rockets'. Tools: {TOOL_NAMES}.",
            id="unknown-tool",
        ),
        pytest.param(
            WireCall("call_bad", "calculator", "{not json"),
            "Error: invalid arguments for calculator: arguments: Invalid JSON (Expecting property "
            "name enclosed in double quotes: line 1 column 2 (char 1))",
            id="not-json",
        ),
        pytest.param(
            WireCall("call_bad", "calculator", '{"expr": "15 * 23"}'),
            "Error: invalid arguments for calculator: expression: Field required",
            id="schema-mismatch",
        ),
    ],
)
async def test_a_bad_tool_call_is_reported_to_the_model_which_tries_again(
    bad_call: WireCall,
    error: str,
    time_skipping_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
):
    wire = OPENAI
    good_call = WireCall.of("call_good", "calculator", {"expression": "15 * 23"})

    def script(request: ReceivedRequest) -> Reply:
        results = wire.tool_results(request)
        if not results:
            return wire.tool_calls(bad_call)
        if results[-1].call_id == "call_bad":
            return wire.tool_calls(good_call)  # the model reads the error and corrects itself
        return wire.text(f"15 * 23 = {results[-1].content}")

    async with FakeProvider(script, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(time_skipping_env) as handle:
            answer = await send(handle, "What is 15 * 23?")

    assert answer == "15 * 23 = 345"
    assert [wire.tool_results(r) for r in server.requests] == [
        [],
        [WireToolResult("call_bad", error)],
        [WireToolResult("call_bad", error), WireToolResult("call_good", "345")],
    ]
    # The model's garbage went back to it as it wrote it; arguments that are not JSON travel as
    # a JSON object holding the text, which every wire (Anthropic's too) can carry.
    sent = bad_call.arguments
    if not is_json_object(sent):
        sent = json.dumps({"unparsed_arguments": bad_call.arguments})
    assert server.requests[1].body["messages"][-2]["tool_calls"] == [
        {
            "id": "call_bad",
            "type": "function",
            "function": {"name": bad_call.name, "arguments": sent},
        }
    ]


async def test_a_model_that_always_asks_for_tools_is_stopped_by_the_step_bound(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    wire = OPENAI

    def script(request: ReceivedRequest) -> Reply:
        if wire.tool_results(request) or request.body["messages"][-1]["content"] != "stop":
            step = len(wire.tool_results(request)) + 1
            return wire.tool_calls(WireCall.of(f"call_{step}", "echo", {"message": "again"}))
        return wire.text("stopped")

    async with FakeProvider(script, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(time_skipping_env, AgentConfig(max_steps_per_turn=3)) as handle:
            answer = await send(handle, "loop forever")
            requests_in_the_runaway_turn = len(server.requests)
            next_answer = await send(handle, "stop")

    assert answer == (
        "I stopped after 3 steps without reaching an answer. "
        "Try asking for less at once, or rephrase the request."
    )
    assert requests_in_the_runaway_turn == 3
    assert [r.call_id for r in wire.tool_results(server.requests[2])] == ["call_1", "call_2"]
    assert next_answer == "stopped"


# ---- Real refusals reach the user at once, with the production retry policy ----


@pytest.mark.parametrize(
    ("failure", "summary"),
    [
        pytest.param(Reply({"detail": "Invalid API Key"}, status=403), FORBIDDEN, id="403"),
        pytest.param(
            Reply({"detail": [{"loc": ["body"], "msg": "Field required"}]}, status=422),
            INVALID,
            id="422",
        ),
        pytest.param(
            OPENAI.text(""), "the LLM returned an empty answer; try rephrasing", id="empty-answer"
        ),
    ],
)
async def test_a_refusal_reaches_the_user_without_a_retry(
    failure: Reply, summary: str, dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    # The dev server and the default retry policy (1 s doubling, 8 attempts). A retry would have
    # been answered "fixed", so the refusal in the answer and two requests in all show there was
    # none, whatever the machine's load.
    wire = OPENAI
    async with FakeProvider(InOrder([failure, wire.text("fixed")]), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(dev_env) as handle:
            await send(handle, "warm up")  # LiteLLM's first import is not the point here
            script = server.script = InOrder([failure, wire.text("fixed")])
            answer = await send(handle, "hello")
            next_answer = await send(handle, "and now?")

    assert answer.startswith(f"{SORRY}{summary}")
    assert next_answer == "fixed"
    assert script.played == 2


async def test_a_missing_key_is_not_retried_and_says_which_variable_to_set(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    # A local OpenAI-compatible server and no key: the OpenAI client refuses before sending
    # anything, and LiteLLM reports that as a server error (500).
    wire = OPENAI
    async with FakeProvider(lambda request: wire.text("unreachable"), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        monkeypatch.delenv(wire.key_variable)
        async with real_agent(time_skipping_env, FAST_RETRIES) as handle:
            answer = await send(handle, "hello")

    assert answer.startswith(
        f"{SORRY}no API key is set for the LLM provider: set LLM_API_KEY or the provider's key "
        "variable (any value for a local server that needs none) (litellm.InternalServerError: "
    )
    assert "OPENAI_API_KEY" in answer
    assert server.requests == []
    assert await plan_activities(handle) == [
        PlanActivity(
            attempt=1,
            last_failure_type=None,
            failure_type="LLMAuthenticationError",
            non_retryable=True,
        )
    ]


# ---- Retry-After: the provider says when to try again ----


def rate_limited(wire: Wire, **headers: str) -> Reply:
    reply = wire.error(429, "Rate limit reached.")
    return Reply(reply.body, reply.status, headers=headers)


async def _plan_error(
    wire: Wire, reply: Reply, monkeypatch: pytest.MonkeyPatch
) -> ApplicationError:
    async with FakeProvider(lambda request: reply, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        with pytest.raises(ApplicationError) as failure:
            await ActivityEnvironment().run(
                plan_next_action, PlanInput(messages=[Message.user("hi")])
            )
    return failure.value


@pytest.mark.parametrize("wire", [OPENAI, ANTHROPIC], ids=lambda wire: wire.name)
@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        pytest.param({"Retry-After": "10"}, 10.0, id="seconds"),
        pytest.param({"Retry-After": "0.5"}, 0.5, id="fractional-seconds"),
        pytest.param({"retry-after-ms": "2500", "Retry-After": "3"}, 2.5, id="milliseconds"),
        pytest.param({"Retry-After": "-5"}, 0.0, id="in-the-past"),
    ],
)
async def test_retry_after_sets_the_delay_before_the_next_attempt(
    wire: Wire, headers: dict[str, str], seconds: float, monkeypatch: pytest.MonkeyPatch
):
    error = await _plan_error(wire, rate_limited(wire, **headers), monkeypatch)

    assert (error.type, error.non_retryable) == ("LLMRateLimited", False)
    assert error.next_retry_delay == timedelta(seconds=seconds)


async def test_retry_after_as_an_http_date(monkeypatch: pytest.MonkeyPatch):
    when = datetime.now(UTC) + timedelta(seconds=20)
    error = await _plan_error(
        OPENAI,
        rate_limited(OPENAI, **{"Retry-After": format_datetime(when, usegmt=True)}),
        monkeypatch,
    )

    assert error.next_retry_delay is not None
    # HTTP dates have whole seconds.
    assert 17 <= error.next_retry_delay.total_seconds() <= 20


async def test_a_wait_longer_than_the_cap_is_told_instead_of_retried(
    monkeypatch: pytest.MonkeyPatch,
):
    error = await _plan_error(OPENAI, rate_limited(OPENAI, **{"Retry-After": "3600"}), monkeypatch)

    assert (error.type, error.non_retryable, error.next_retry_delay) == (
        "LLMRateLimited",
        True,
        None,
    )
    assert error.message.startswith(
        "the LLM provider is rate limiting us and asks us to wait 3,600 s (litellm.RateLimitError"
    )
    assert MAX_RETRY_AFTER_SECONDS < 3600


async def test_without_retry_after_the_retry_policy_decides(monkeypatch: pytest.MonkeyPatch):
    error = await _plan_error(OPENAI, rate_limited(OPENAI), monkeypatch)

    assert (error.type, error.non_retryable, error.next_retry_delay) == (
        "LLMRateLimited",
        False,
        None,
    )


async def test_temporal_waits_as_long_as_retry_after_asks(
    dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    # Real time on the dev server: the retry policy alone would retry after 0.05 s.
    wire = OPENAI
    replies = [rate_limited(wire, **{"Retry-After": "2"}), wire.text("recovered")]
    async with FakeProvider(InOrder(replies), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(dev_env, FAST_RETRIES) as handle:
            answer = await send(handle, "hello")

    assert answer == "recovered"
    first, second = server.requests
    assert second.at - first.at >= 2.0


# ---- A server whose chat template needs `content` on every message (llama.cpp) ----


def llama_cpp(wire: OpenAIWire) -> Callable[[ReceivedRequest], Reply]:
    """Two tool steps, then an answer; HTTP 500 whenever a message lacks a string `content`, as
    llama.cpp's Jinja chat templates do."""

    def script(request: ReceivedRequest) -> Reply:
        if any(not isinstance(m.get("content"), str) for m in request.body["messages"]):
            return Reply(
                {
                    "error": {
                        "code": 500,
                        "message": "'dict object' has no attribute 'content'",
                        "type": "server_error",
                    }
                },
                status=500,
            )
        done = len(wire.tool_results(request))
        if done == 0:
            return wire.tool_calls(WireCall.of("call_1", "calculator", {"expression": "6 * 7"}))
        if done == 1:
            return wire.tool_calls(WireCall.of("call_2", "echo", {"message": "forty-two"}))
        return wire.text(" and ".join(r.content for r in wire.tool_results(request)))

    return script


async def test_a_server_that_requires_content_works_for_a_two_step_tool_turn(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    wire = OPENAI
    async with FakeProvider(llama_cpp(wire), wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(time_skipping_env, FAST_RETRIES) as handle:
            answer = await send(handle, "What is 6 * 7? Then echo it.")
            next_answer = await send(handle, "Once more?")

    assert answer == "42 and forty-two"
    assert next_answer == "42 and forty-two"
    assert len(server.requests) == 6  # three per turn, none refused
    [assistant, *_] = [m for m in server.requests[2].body["messages"] if m.get("tool_calls")]
    assert assistant["content"] == ""


async def test_anthropic_gets_tool_calls_without_a_placeholder_text(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    # Anthropic refuses empty text, and LiteLLM would replace "" with a sentence of its own.
    wire = ANTHROPIC
    call = WireCall.of("call_1", "calculator", {"expression": "6 * 7"})

    def script(request: ReceivedRequest) -> Reply:
        return wire.text("42") if wire.tool_results(request) else wire.tool_calls(call)

    async with FakeProvider(script, wire.paths) as server:
        use_provider(monkeypatch, wire, wire.api_base(server.url))
        async with real_agent(time_skipping_env) as handle:
            assert await send(handle, "6 * 7?") == "42"

    assistant = server.requests[1].body["messages"][1]
    assert assistant == {
        "role": "assistant",
        "content": [
            {
                "type": "tool_use",
                "id": "call_1",
                "name": "calculator",
                "input": {"expression": "6 * 7"},
            }
        ],
    }

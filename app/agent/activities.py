"""The orchestrator's activities: `plan_next_action` (an LLM call) and `execute_tool` (local tools).

All I/O of the agent loop lives here, outside the deterministic workflow. `plan_next_action`
makes one LiteLLM call with native tool calling and no LiteLLM retries: Temporal's retry policy
owns retries, so every attempt is visible in the event history. Provider errors that cannot
succeed on a retry become non-retryable `ApplicationError`s whose message the user can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from app.agent.llm_client import LLMSettings, complete, litellm_module, redact
from app.agent.models import (
    Message,
    PlanInput,
    PlanOutput,
    ToolCall,
    ToolRequest,
    ToolResult,
    cap_text,
)
from app.agent.text_publisher import TextPublisher
from app.agent.tool_catalog import TOOLS, tool_schemas
from app.core.tool_errors import InvalidToolArguments

SYSTEM_PROMPT = (
    "You are a helpful assistant with tools. Use a tool whenever it can answer part of the "
    "request (several at once when they are independent), then answer the user briefly from "
    "the tool results. If a tool reports an error, explain it or try again with corrected "
    "arguments. Never invent tool results."
)

# (LiteLLM exception name, error type, retryable, message for the user). Checked in order, so
# subclasses (ContextWindowExceededError is a BadRequestError) come before their parents.
_PROVIDER_ERRORS: list[tuple[str, str, bool, str]] = [
    (
        "AuthenticationError",
        "LLMAuthenticationError",
        False,
        "the LLM provider rejected the API key",
    ),
    (
        "PermissionDeniedError",
        "LLMPermissionDenied",
        False,
        "the LLM provider denied access to this model",
    ),
    (
        "ContextWindowExceededError",
        "LLMContextWindowExceeded",
        False,
        "the conversation is too long for the model's context window",
    ),
    (
        "ContentPolicyViolationError",
        "LLMContentPolicy",
        False,
        "the LLM provider refused the request under its content policy",
    ),
    ("NotFoundError", "LLMModelNotFound", False, "the LLM provider does not know this model"),
    ("BadRequestError", "LLMBadRequest", False, "the LLM provider rejected the request as invalid"),
    ("RateLimitError", "LLMRateLimited", True, "the LLM provider is rate limiting us"),
    ("Timeout", "LLMTimeout", True, "the LLM provider did not answer in time"),
    ("APIConnectionError", "LLMConnectionError", True, "cannot connect to the LLM provider"),
    ("ServiceUnavailableError", "LLMUnavailable", True, "the LLM provider is unavailable"),
    ("InternalServerError", "LLMServerError", True, "the LLM provider had a server error"),
    ("APIError", "LLMServerError", True, "the LLM provider returned an error"),
]


def provider_error(err: Exception, settings: LLMSettings) -> ApplicationError:
    """`err` from LiteLLM as an ApplicationError that tells Temporal whether to retry."""
    litellm = litellm_module()
    detail = redact(str(err), settings)[:500]
    raised = _raised_class(err, litellm)
    for exception_name, error_type, retryable, summary in _PROVIDER_ERRORS:
        exception_class = getattr(litellm, exception_name, None)
        if exception_class is not None and issubclass(raised, exception_class):
            return ApplicationError(
                f"{summary} ({detail})", type=error_type, non_retryable=not retryable
            )
    return ApplicationError(f"the LLM call failed ({detail})", type="LLMError")


def _raised_class(err: Exception, litellm: Any) -> type[BaseException]:
    """The LiteLLM exception class that says best what went wrong."""
    causes: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in causes:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    # LiteLLM reports a refused connection as a server error (500).
    if any(isinstance(c, ConnectionError) for c in causes) and not isinstance(err, litellm.Timeout):
        return litellm.APIConnectionError
    # When every fallback model fails, LiteLLM raises a plain Exception whose message starts with
    # the last error ("litellm.AuthenticationError: ..."): keep its class, so that a permanent
    # failure is still not retried.
    match = re.match(r"litellm\.(\w+):", str(err))
    named = getattr(litellm, match[1], None) if match and type(err) is Exception else None
    return named if isinstance(named, type) else type(err)


def fit_to_context(
    model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Drop the oldest whole turns until the prompt fits the model's input context."""
    litellm = litellm_module()
    try:
        limit = litellm.get_model_info(model).get("max_input_tokens")
    except Exception:  # models LiteLLM has no data for (local and custom ones)
        return messages
    if not limit:
        return messages
    # A token is at least one character, so a prompt with fewer characters (plus a few tokens
    # of framing per message) than the budget fits without counting, which is the common case.
    characters = len(json.dumps(messages)) + len(json.dumps(tools)) + 8 * len(messages)
    if characters <= 0.9 * limit:
        return messages
    # A turn starts at a user message; cutting inside one would orphan tool results.
    starts = [i for i, m in enumerate(messages) if m["role"] == "user"]
    system = messages[:1]
    for start in starts:
        window = system + messages[start:]
        if litellm.token_counter(model=model, messages=window, tools=tools) <= 0.9 * limit:
            return window
    # Even the current turn alone is too long: let the provider say so (context window error).
    return system + messages[starts[-1] :] if starts else messages


@contextlib.asynccontextmanager
async def heartbeating(every_seconds: float = 1.0) -> AsyncIterator[None]:
    """Heartbeat while an LLM call runs, so a crashed worker is noticed within the heartbeat
    timeout (seconds) rather than the call's whole timeout (minutes)."""

    async def beat() -> None:
        # Sleep first: a quick call sends no heartbeat at all, and so costs no round trip.
        while True:
            await asyncio.sleep(every_seconds)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


@activity.defn
async def plan_next_action(input: PlanInput) -> PlanOutput:
    """Ask the LLM for the next step: tool calls to run, or the answer to the user."""
    settings = LLMSettings.from_env()
    tools = tool_schemas()
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    messages += [message.to_chat() for message in input.messages]
    async with TextPublisher(input.turn_id) as publisher:
        try:
            async with heartbeating():
                if "litellm" not in sys.modules:
                    # The first import takes seconds: off the event loop, so heartbeats go on.
                    await asyncio.to_thread(litellm_module)
                messages = fit_to_context(settings.model, messages, tools)
                on_text = publisher.text if publisher.streams_text else None
                response, model = await complete(messages, tools, settings, on_text)
        except ApplicationError as err:
            publisher.failed(err)
            raise
        except Exception as err:
            error = provider_error(err, settings)
            publisher.failed(error)
            raise error from None
    choice = response.choices[0].message
    calls = [
        ToolCall(
            id=call.id or f"call_{index}",
            name=function.name or "",
            arguments=function.arguments or "{}",
        )
        for index, call in enumerate(choice.tool_calls or [])
        # Only function tools are offered; anything else the model invents has no function.
        if (function := getattr(call, "function", None)) is not None
    ]
    # A streamed answer with only tool calls has empty text, not none: keep the history uniform.
    content = choice.content if isinstance(choice.content, str) and choice.content else None
    if not calls and not content:
        raise ApplicationError("the LLM returned an empty answer", type="LLMEmptyAnswer")
    return PlanOutput(
        message=Message(role="assistant", content=content, tool_calls=calls), model=model
    )


def run_local_tool(name: str, arguments_json: str) -> str:
    """Run the local tool `name` on its JSON arguments; raises InvalidToolArguments."""
    tool = TOOLS.get(name)
    if tool is None or tool.function is None:
        raise InvalidToolArguments(f"there is no local tool named {name!r}")
    return tool.function(tool.input_model.model_validate_json(arguments_json))


@activity.defn
async def execute_tool(request: ToolRequest) -> ToolResult:
    """Run a local tool; a bad argument becomes an error result the LLM can read."""
    try:
        content = run_local_tool(request.name, request.arguments)
    except ValueError as err:  # InvalidToolArguments and pydantic's ValidationError
        return ToolResult(content=f"Error: {err}", is_error=True)
    return ToolResult(content=cap_text(content, request.max_result_chars))

"""The planning activity, `plan_next_action`: one LLM call through LiteLLM.

It lives outside the deterministic workflow, as all I/O of the agent loop does. It
makes one LiteLLM call with native tool calling and no LiteLLM retries: Temporal's retry policy
owns retries, so every attempt is visible in the event history. Failures that cannot succeed on
a retry (see `provider_errors`, plus an empty or oversized reply) become non-retryable
`ApplicationError`s whose message the user can act on; each failed attempt is one log line.
Each call reports its usage and price; when the operator's budget is spent, `plan_next_action`
answers without calling the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from app.agent.llm.client import (
    BudgetSettings,
    LLMSettings,
    candidate_models,
    complete,
    litellm_module,
    litellm_ready,
    response_usage,
)
from app.agent.llm.errors import provider_error
from app.agent.llm.telemetry import llm_call_telemetry, note_response
from app.agent.models import (
    Message,
    PlanInput,
    PlanOutput,
    ToolCall,
)
from app.agent.stream.activity_side import TextPublisher
from app.agent.tools.catalog import tool_schemas

SYSTEM_PROMPT = (
    "You are a helpful assistant with tools. Use a tool whenever it can answer part of the "
    "request (several at once when they are independent), then answer the user briefly from "
    "the tool results. If a tool reports an error, explain it or try again with corrected "
    "arguments. Never invent tool results."
)

# A reply larger than this is refused rather than returned: it would make a payload (and every
# later planning input that carries it) approach Temporal's 2 MB limit. It is far more text than
# any model's output limit allows (about 64,000 tokens), so only a broken server sends one.
MAX_REPLY_BYTES = 256 * 1024


def fit_to_context(
    models: list[str], messages: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Drop the oldest whole turns until the prompt fits the input context of every model in
    `models` (the one that will be called and its fallbacks: any of them may answer)."""
    litellm = litellm_module()
    limits: list[tuple[int, str]] = []
    for model in models:
        try:
            limit = litellm.get_model_info(model).get("max_input_tokens")
        except Exception:  # models LiteLLM has no data for (local and custom ones)
            continue
        if limit:
            limits.append((int(limit), model))
    if not limits:
        return messages
    limit, model = min(limits)
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
    if (refusal := worker_budget_refusal(input)) is not None:
        return PlanOutput(
            message=Message.assistant(refusal), model=settings.model, budget_exhausted=True
        )
    try:
        with llm_call_telemetry(settings.model) as call:
            return call.answered(await _plan(input, settings))
    except ApplicationError as err:
        # Expected failures are BENIGN (no traceback from the SDK): one line per attempt.
        retrying = "not retried" if err.non_retryable else "will retry"
        if err.next_retry_delay is not None:
            retrying = f"will retry in {err.next_retry_delay.total_seconds():g} s"
        activity.logger.warning("LLM call failed (%s, %s): %s", err.type, retrying, err.message)
        raise


async def _plan(input: PlanInput, settings: LLMSettings) -> PlanOutput:
    tools = tool_schemas()
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    messages += [message.to_chat() for message in input.messages]
    async with TextPublisher(input.turn_id) as publisher:
        try:
            async with heartbeating():
                # The first import takes seconds: in a thread, so heartbeats and other tasks go on.
                await litellm_ready()
                # Trim for the models that may answer: the offline model when the configured one
                # has no key, and the fallbacks.
                messages = fit_to_context(candidate_models(settings), messages, tools)
                on_text = publisher.text if publisher.streams_text else None
                response, model = await complete(messages, tools, settings, on_text)
                note_response(response)
                if response.choices and not response.choices[0].message.tool_calls:
                    publisher.answered()
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
    if not calls and not (content and content.strip()):
        # Asking again sends the same prompt: a model that answers nothing usually does again.
        raise _failure(
            "the LLM returned an empty answer; try rephrasing the request", "LLMEmptyAnswer"
        )
    output = PlanOutput(
        message=Message(role="assistant", content=content, tool_calls=calls),
        model=model,
        usage=response_usage(response, model),
    )
    size = len(output.model_dump_json().encode())
    if size > MAX_REPLY_BYTES:
        # Retrying would pay for the same oversized reply again.
        raise _failure(
            f"the LLM's reply is too large ({size:,} bytes; the limit is {MAX_REPLY_BYTES:,})",
            "LLMReplyTooLarge",
        )
    return output


def _failure(message: str, error_type: str) -> ApplicationError:
    return ApplicationError(
        message,
        type=error_type,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


def worker_budget_refusal(input: PlanInput) -> str | None:
    """Why the operator's budget (AGENT_MAX_*) allows no further call, or None if it does."""
    try:
        budget = BudgetSettings.from_env()
    except ValueError as err:
        raise ApplicationError(str(err), type="BadBudgetSetting", non_retryable=True) from None
    return budget.refusal(input.spent)

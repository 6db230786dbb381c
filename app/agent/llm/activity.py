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
from app.agent.llm.errors import is_context_window, provider_error, stated_context_limit
from app.agent.llm.prices import apply_prices
from app.agent.llm.telemetry import llm_call_telemetry, note_response
from app.agent.llm.tool_arguments import is_json_object
from app.agent.llm.usage import LLMUsage
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
    models: list[str],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    unknown_limit: int | None = None,
) -> list[dict[str, Any]]:
    """Drop the oldest whole turns until the prompt fits the input context of every model in
    `models` (the one that will be called and its fallbacks: any of them may answer).
    `unknown_limit` (LLM_MAX_INPUT_TOKENS) is the context of models LiteLLM does not know."""
    litellm = litellm_module()
    limits: list[tuple[int, str]] = []
    for model in models:
        try:
            limit = litellm.get_model_info(model).get("max_input_tokens")
        except Exception:  # models LiteLLM has no data for (local and custom ones)
            limit = None
        limit = limit or unknown_limit
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


def drop_oldest_turns(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], model: str, err: Exception
) -> list[dict[str, Any]] | None:
    """The system prompt and the newest whole turns that fit the context `err` (the provider's
    refusal) states, with a margin for counting tokens unlike the server does; only the current
    turn when it states none; None when there is no older turn to drop."""
    starts = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if len(starts) < 2:
        return None
    system, limit = messages[:1], stated_context_limit(str(err))
    if limit is not None:
        counter = litellm_module().token_counter
        for start in starts[1:]:
            window = system + messages[start:]
            if counter(model=model, messages=window, tools=tools) <= 0.75 * limit:
                return window
    return system + messages[starts[-1] :]


@contextlib.asynccontextmanager
async def heartbeating(every_seconds: float = 1.0) -> AsyncIterator[None]:
    """Heartbeat while an LLM call runs, so a crashed worker is noticed within the heartbeat
    timeout (seconds) rather than the call's whole timeout (minutes)."""

    async def beat() -> None:
        # Sleep first: a quick call sends no heartbeat at all, and so costs no round trip.
        while True:
            await asyncio.sleep(every_seconds)
            # The details carry the usage of earlier failed attempts to the next attempt.
            activity.heartbeat(*activity.info().heartbeat_details)

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
            output = call.answered(await _plan(input, settings))
    except ApplicationError as err:
        # Expected failures are BENIGN (no traceback from the SDK): one line per attempt.
        retrying = "not retried" if err.non_retryable else "will retry"
        if err.next_retry_delay is not None:
            retrying = f"will retry in {err.next_retry_delay.total_seconds():g} s"
        activity.logger.warning("LLM call failed (%s, %s): %s", err.type, retrying, err.message)
        raise
    earlier = failed_usage()
    return output.model_copy(update={"failed_usage": earlier}) if earlier else output


def failed_usage() -> list[LLMUsage]:
    """The usage of this call's earlier attempts that failed after reaching the provider."""
    details = activity.info().heartbeat_details
    return [LLMUsage.model_validate(usage) for usage in details[0]] if details else []


def with_failed_usage(err: ApplicationError, usage: LLMUsage | None) -> ApplicationError:
    """`err` carrying the usage of every failed attempt so far (its details), for the workflow's
    counts, and heartbeating it, for the next attempt: a failed call is paid for too."""
    usages = [*failed_usage(), *([usage] if usage is not None else [])]
    if not usages:
        return err
    details = [u.model_dump() for u in usages]
    activity.heartbeat(details)
    return ApplicationError(
        err.message,
        details,
        type=err.type,
        non_retryable=err.non_retryable,
        next_retry_delay=err.next_retry_delay,
        category=err.category,
    )


async def _plan(input: PlanInput, settings: LLMSettings) -> PlanOutput:
    tools = tool_schemas() + [tool.tool_schema() for tool in input.tools]
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    messages += [message.to_chat() for message in input.messages]
    async with TextPublisher(input.turn_id, watched=input.watched) as publisher:
        try:
            async with heartbeating():
                # The first import takes seconds: in a thread, so heartbeats and other tasks go on.
                await litellm_ready()
                # Trim for the models that may answer: the offline model when the configured one
                # has no key, and the fallbacks.
                apply_prices(settings)
                models = candidate_models(settings)
                messages = fit_to_context(models, messages, tools, settings.max_input_tokens)
                on_text = publisher.text if publisher.streams_text else None
                publisher.calling()
                try:
                    response, model = await complete(
                        messages, tools, settings, on_text, publisher.restart
                    )
                except Exception as err:
                    # The provider knows its context best (a local server's n_ctx): with the
                    # oldest turns dropped, the conversation can go on instead of staying stuck.
                    shorter = (
                        drop_oldest_turns(messages, tools, models[0], err)
                        if is_context_window(err)
                        else None
                    )
                    if shorter is None:
                        raise
                    activity.logger.warning(
                        "LLM context window exceeded; trying once more with %d of %d messages",
                        len(shorter),
                        len(messages),
                    )
                    publisher.restart()
                    response, model = await complete(
                        shorter, tools, settings, on_text, publisher.restart
                    )
                note_response(response)
                if response.choices and not response.choices[0].message.tool_calls:
                    publisher.answered()
        except ApplicationError as err:
            publisher.failed(err)
            raise with_failed_usage(err, None) from None
        except Exception as err:
            error = provider_error(err, settings)
            publisher.failed(error)
            partial = getattr(err, "partial_response", None)
            usage = response_usage(partial, settings.model) if partial is not None else None
            raise with_failed_usage(error, usage) from None
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
    if response.choices[0].finish_reason == "length":
        content, calls = cut_by_length(content, calls, settings)
    if not calls and not (content and content.strip()):
        # Asking again sends the same prompt: a model that answers nothing usually does again.
        raise with_failed_usage(
            _failure(
                "the LLM returned an empty answer; try rephrasing the request", "LLMEmptyAnswer"
            ),
            response_usage(response, model),
        )
    output = PlanOutput(
        message=Message(role="assistant", content=content, tool_calls=calls),
        model=model,
        usage=response_usage(response, model),
    )
    size = len(output.model_dump_json().encode())
    if size > MAX_REPLY_BYTES:
        # Retrying would pay for the same oversized reply again.
        raise with_failed_usage(
            _failure(
                f"the LLM's reply is too large ({size:,} bytes; the limit is {MAX_REPLY_BYTES:,})",
                "LLMReplyTooLarge",
            ),
            output.usage,
        )
    return output


def cut_by_length(
    content: str | None, calls: list[ToolCall], settings: LLMSettings
) -> tuple[str | None, list[ToolCall]]:
    """A reply the output token limit cut: the calls written whole, and the text marked as cut.

    The last call was being written when the limit came, so it is never run, nor is any call
    whose arguments are not a whole JSON object; the note says so to the user (when nothing else
    runs, the reply is the answer) and to the model (it reads its own message next step).
    """
    whole = [call for call in calls[:-1] if is_json_object(call.arguments)]
    cut = [call.name for call in calls if call not in whole]
    limit = f" (LLM_MAX_TOKENS={settings.max_tokens})" if settings.max_tokens else ""
    not_run = f"; the call to {', '.join(cut)} was not run" if cut else ""
    note = (
        f"[This reply was cut off at the model's output token limit{limit}{not_run}. "
        "Ask it to go on, or raise LLM_MAX_TOKENS where the orchestrator worker runs.]"
    )
    text = f"{content.rstrip()}\n\n{note}" if content and content.strip() else note
    return text, whole


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

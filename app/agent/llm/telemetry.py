"""What one LLM call shows an operator: a span with the GenAI conventions, and its metrics.

`plan_next_action` runs each provider call inside `llm_call_telemetry`. The span (a child of the
activity's span, so it sits in the turn's trace) follows OpenTelemetry's GenAI semantic
conventions: `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`,
`gen_ai.usage.input_tokens` and `output_tokens`, `gen_ai.response.finish_reasons`, `error.type`;
plus the call's price (`gen_ai.usage.cost_usd`, LiteLLM's cost map) and the activity attempt
(`temporal.attempt`). It never carries the prompt, the answer or a key. The metrics go through
the activity's SDK meter: `agent_llm_calls_total{model,outcome}`,
`agent_llm_tokens_total{model,type}`, `agent_llm_call_cost_usd{model}` (its `_sum` is the money
spent) and `agent_llm_call_duration_seconds{model,outcome}`. Tokens and price count every attempt
that reached the provider, the failed ones too: they are paid for (`with_failed_usage`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from opentelemetry import trace
from temporalio import activity
from temporalio.exceptions import ApplicationError

from app.agent.llm.usage import LLMUsage
from app.agent.models import PlanOutput
from app.core.telemetry import cached_instrument

_tracer = trace.get_tracer(__name__)
CALLS = "LLM calls by model and outcome"
DURATION = "LLM call latency, as the worker measured it"
TOKENS = "LLM tokens by model and type"
COST = "LLM cost per call (LiteLLM's cost map)"


class LLMCall:
    """The call in progress: `answered` records what the provider returned."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.output: PlanOutput | None = None
        self.usage: LLMUsage | None = None  # what the attempt used at the provider, if known

    def answered(self, output: PlanOutput) -> PlanOutput:
        """The call returned `output`: its model, tokens and price go on the span."""
        self.output = output
        self.set_usage(output.usage.model_copy(update={"model": output.model}))
        return output

    def set_usage(self, usage: LLMUsage) -> None:
        """The model, tokens and price of the attempt go on the span (and in its metrics)."""
        self.usage = usage
        self.span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage.prompt_tokens,
                "gen_ai.usage.output_tokens": usage.completion_tokens,
            }
        )
        if usage.model:
            self.span.set_attribute("gen_ai.response.model", usage.model)
        if usage.cost_usd is not None:
            self.span.set_attribute("gen_ai.usage.cost_usd", usage.cost_usd)


def note_response(response: Any) -> None:
    """Put the provider's finish reasons and response id on the current LLM call's span."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    reasons = [str(c.finish_reason) for c in getattr(response, "choices", []) if c.finish_reason]
    span.set_attribute("gen_ai.response.finish_reasons", reasons)
    if response_id := getattr(response, "id", None):
        span.set_attribute("gen_ai.response.id", str(response_id))


@contextmanager
def llm_call_telemetry(model: str) -> Iterator[LLMCall]:
    """Trace and measure one planning call to `model` (the configured model)."""
    attributes: dict[str, str | int] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "temporal.attempt": activity.info().attempt,
    }
    if "/" in model:  # LiteLLM's provider prefix: `anthropic/claude-...`, `offline/agent`
        attributes["gen_ai.provider.name"] = model.split("/", 1)[0]
    started = time.monotonic()
    with _tracer.start_as_current_span(
        f"chat {model}", kind=trace.SpanKind.CLIENT, attributes=attributes
    ) as span:
        call = LLMCall(span)
        try:
            yield call
        except BaseException as err:
            outcome = err.type if isinstance(err, ApplicationError) and err.type else "error"
            span.set_attribute("error.type", outcome)
            paid = attempt_usage(err)
            if paid is not None:
                call.set_usage(paid)
            _record(model, outcome, time.monotonic() - started, call.usage)
            raise
        _record(model, "ok", time.monotonic() - started, call.usage)


def attempt_usage(err: BaseException) -> LLMUsage | None:
    """What this failed attempt used at the provider, or None if it used nothing there.

    A failed attempt that reached the provider is paid for: its error carries the usage of every
    failed attempt so far (`with_failed_usage`), the earlier ones first, as the heartbeat details
    this attempt started with hold them.
    """
    details = err.details if isinstance(err, ApplicationError) else ()
    usages = details[0] if details and isinstance(details[0], list) else []
    earlier = activity.info().heartbeat_details
    new = usages[len(earlier[0]) if earlier else 0 :]
    return LLMUsage.model_validate(new[-1]) if new else None


def _metric(kind: str, name: str, description: str, unit: str = "", **labels: str) -> Any:
    """The activity meter's instrument `name` with `labels` bound, made once per worker queue."""
    info = activity.info()
    scope = (info.namespace, info.task_queue, info.activity_type)
    key = (*scope, kind, name, tuple(sorted(labels.items())))

    def create() -> Any:
        made = getattr(activity.metric_meter(), f"create_{kind}")(name, description, unit or None)
        return made.with_additional_attributes(labels)

    return cached_instrument(key, create)


def _record(model: str, outcome: str, seconds: float, usage: LLMUsage | None) -> None:
    """The call's metrics, labelled with the model that answered (or was asked, when no answer
    says which); tokens and price for every attempt that reached the provider."""
    if usage is not None and usage.model:
        model = usage.model
    _metric("counter", "agent_llm_calls", CALLS, model=model, outcome=outcome).add(1)
    _metric(
        "histogram_timedelta", "agent_llm_call_duration", DURATION, model=model, outcome=outcome
    ).record(timedelta(seconds=seconds))
    if usage is None:
        return
    _metric("counter", "agent_llm_tokens", TOKENS, model=model, type="input").add(
        usage.prompt_tokens
    )
    _metric("counter", "agent_llm_tokens", TOKENS, model=model, type="output").add(
        usage.completion_tokens
    )
    if usage.cost_usd is not None:
        _metric("histogram_float", "agent_llm_call_cost", COST, "usd", model=model).record(
            usage.cost_usd
        )

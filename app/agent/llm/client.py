"""Which LLM the agent uses, and the one call it makes to it through LiteLLM.

Switching models is one line: edit `DEFAULT_MODEL`, or set `LLM_MODEL` in the environment or
`.env` to any LiteLLM model string (`gpt-4o-mini`, `anthropic/claude-...`, `gemini/...`,
`ollama_chat/...`). When the chosen model has no credentials, the deterministic offline model
answers instead, so the sample runs on a machine with no key and no network. Provider settings
and keys are read here, inside the worker, and never travel through Temporal; so is the
operator's budget per conversation (`AGENT_MAX_TOKENS`, `AGENT_MAX_COST_USD`). Each response's
usage is priced here with LiteLLM's local cost map.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from app.agent.llm.tool_arguments import with_json_arguments
from app.agent.llm.usage import LITELLM_ESTIMATE, NO_USAGE, LLMUsage, UsageTotals, budget_refusal
from app.core.config import load_env

if TYPE_CHECKING:
    from litellm import ModelResponse

    from app.agent.llm.offline_model import OfflineAgentLLM

# Switch models here (or with LLM_MODEL); any LiteLLM model string works.
DEFAULT_MODEL = "openai/gpt-4o-mini"

OFFLINE_MODEL = "offline/agent"
OFFLINE_HINT = "offline model: set LLM_MODEL and a provider key for a real LLM"
# The orchestrator worker logs this, then the model, once LiteLLM is loaded.
READY_TEXT = "LiteLLM loaded; model:"

# The model this worker process answers with, as `get_status` reports it to clients.
_worker_model: str | None = None


def announce_worker_model(description: str) -> None:
    """Record the model this worker uses, for the clients' banner."""
    global _worker_model
    _worker_model = description


def worker_model() -> str | None:
    """The model this worker process answers with, once announced."""
    return _worker_model


@dataclass(frozen=True)
class LLMSettings:
    """Provider settings from the environment; they stay in the worker process."""

    model: str = DEFAULT_MODEL
    api_base: str | None = None
    api_key: str | None = None
    timeout_seconds: float = 60.0
    temperature: float | None = None
    max_tokens: int | None = None
    fallbacks: list[str] = field(default_factory=list)
    # The input context of models LiteLLM has no data for (local servers): trimming needs it.
    max_input_tokens: int | None = None
    # US dollars per million tokens, for a model LiteLLM has no price for (cost budgets need one).
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None

    @classmethod
    def from_env(cls) -> LLMSettings:
        load_env()
        env = os.environ
        return cls(
            model=env.get("LLM_MODEL") or DEFAULT_MODEL,
            api_base=env.get("LLM_API_BASE") or None,
            api_key=env.get("LLM_API_KEY") or None,
            timeout_seconds=float(env.get("LLM_TIMEOUT_SECONDS") or 60),
            temperature=float(env["LLM_TEMPERATURE"]) if env.get("LLM_TEMPERATURE") else None,
            max_tokens=int(env["LLM_MAX_TOKENS"]) if env.get("LLM_MAX_TOKENS") else None,
            fallbacks=[m.strip() for m in env.get("LLM_FALLBACKS", "").split(",") if m.strip()],
            max_input_tokens=_tokens(env.get("LLM_MAX_INPUT_TOKENS")),
            price_input_per_mtok=_dollars(env.get("LLM_PRICE_INPUT_PER_MTOK")),
            price_output_per_mtok=_dollars(env.get("LLM_PRICE_OUTPUT_PER_MTOK")),
        )


def _tokens(value: str | None) -> int | None:
    return int(value.strip().replace("_", "")) if value and value.strip() else None


def _dollars(value: str | None) -> float | None:  # "$0.50" or "0.5"
    return float(value.strip().removeprefix("$")) if value and value.strip() else None


@dataclass(frozen=True)
class ModelChoice:
    """The model that will answer, and why the offline model was chosen if it was."""

    model: str
    offline_reason: str | None = None

    @property
    def is_offline(self) -> bool:
        return self.model == OFFLINE_MODEL

    def describe(self) -> str:
        if self.offline_reason:
            return f"{self.model} ({OFFLINE_HINT}; {self.offline_reason})"
        if self.is_offline:
            return f"{self.model} ({OFFLINE_HINT})"
        return self.model


def litellm_module() -> Any:
    """LiteLLM, imported on first use (it takes seconds) with the offline model registered."""
    load_env()
    # LiteLLM's streaming types warn once about a pydantic qualifier: noise in every worker log.
    warnings.filterwarnings("ignore", message=r".*is using the `ReadOnly` qualifier")
    import litellm

    from app.agent.llm import openai_body

    openai_body.install()  # the OpenAI client's per-call walk of the body, skipped where a no-op
    if not any(p.get("provider") == "offline" for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": "offline", "custom_handler": offline_model()},
        ]
        litellm.suppress_debug_info = True
        # Known to LiteLLM's model table: free, and with a context size for trimming.
        litellm.register_model(
            {
                OFFLINE_MODEL: {
                    "litellm_provider": "offline",
                    "mode": "chat",
                    "max_input_tokens": 32_000,
                    "max_output_tokens": 4_000,
                    "input_cost_per_token": 0.0,
                    "output_cost_per_token": 0.0,
                    "cache_creation_input_token_cost": 0.0,
                    "cache_read_input_token_cost": 0.0,
                    "supports_function_calling": True,
                }
            }
        )
    return litellm


@functools.cache
def warm_up() -> concurrent.futures.Future[Any]:
    """Import LiteLLM in a background thread, once; the future holds the module when done.

    The orchestrator worker starts this after it begins polling, so a new worker takes tasks at
    once instead of seconds later; the first planning call awaits it (`litellm_ready`).
    """
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    # Running futures cannot be cancelled: a planning call cancelled while it waits (a timeout)
    # would otherwise cancel the warm-up for every later call.
    future.set_running_or_notify_cancel()

    def load() -> None:
        try:
            future.set_result(litellm_module())
        except BaseException as err:  # the awaiting activity reports it
            future.set_exception(err)

    threading.Thread(target=load, name="litellm-warm-up", daemon=True).start()
    return future


async def litellm_ready() -> Any:
    """LiteLLM, once the warm-up thread has imported it, without blocking the event loop.

    Checking `"litellm" in sys.modules` is not enough: the module is there as soon as its import
    starts, and importing it again on the event loop would then wait for the other thread.
    """
    return await asyncio.wrap_future(warm_up())


@functools.cache
def offline_model() -> OfflineAgentLLM:
    """The offline model's LiteLLM handler (importing it imports LiteLLM)."""
    from app.agent.llm.offline_model import OfflineAgentLLM

    return OfflineAgentLLM()


def choose_model(settings: LLMSettings | None = None) -> ModelChoice:
    """The configured model if it has credentials, else the offline model with the reason."""
    settings = settings or LLMSettings.from_env()
    if settings.model.startswith("offline/"):
        return ModelChoice(settings.model)
    if settings.api_key or settings.api_base:
        return ModelChoice(settings.model)
    try:
        check = litellm_module().validate_environment(settings.model)
    except Exception as err:  # an unknown provider prefix, for example
        return ModelChoice(OFFLINE_MODEL, f"cannot use {settings.model!r}: {err}")
    if check.get("keys_in_environment"):
        return ModelChoice(settings.model)
    missing = " or ".join(check.get("missing_keys") or ["credentials"])
    return ModelChoice(OFFLINE_MODEL, f"{settings.model} needs {missing}")


def candidate_models(settings: LLMSettings | None = None) -> list[str]:
    """The models that may answer the next call, in order: the chosen one, then the fallbacks."""
    settings = settings or LLMSettings.from_env()
    return [choose_model(settings).model, *settings.fallbacks]


async def complete(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    settings: LLMSettings | None = None,
    on_text: Callable[[str], None] | None = None,
    on_restart: Callable[[], None] | None = None,
) -> tuple[ModelResponse, str]:
    """One chat completion with native tool calling; returns the response and the model used.

    With `on_text`, the answer is streamed: `on_text` gets each piece of text as it arrives, and
    the response returned is rebuilt from the chunks, the same as without streaming (see
    `streaming.py`: only a stream the provider ended counts; `on_restart` voids shown text).
    """
    settings = settings or LLMSettings.from_env()
    models = candidate_models(settings)
    model = models[0]
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": for_provider(model, messages),
        "tools": tools,
        "tool_choice": "auto",
        "timeout": settings.timeout_seconds,
        # Temporal's retry policy owns retries, so every attempt shows in the event history.
        "num_retries": 0,
    }
    api_base, basic_auth = split_credentials(settings.api_base)
    optional = {
        "api_base": api_base,
        "api_key": settings.api_key,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "fallbacks": settings.fallbacks or None,
        "extra_headers": {"Authorization": basic_auth} if basic_auth else None,
    }
    kwargs.update({key: value for key, value in optional.items() if value is not None})
    # Imported here: the streaming module builds on this one.
    from app.agent.llm.streaming import answering_model, streamed_with_fallbacks

    if on_text is None:
        response = await litellm_module().acompletion(**kwargs)
        return response, answering_model(response, models)

    return await streamed_with_fallbacks(kwargs, models, messages, on_text, on_restart)


def response_usage(response: ModelResponse, model: str) -> LLMUsage:
    """The call's token counts, whether they are estimates, and LiteLLM's price (None if none)."""
    usage = getattr(response, "usage", None)
    prompt = getattr(usage, "prompt_tokens", 0) or 0
    completion = getattr(usage, "completion_tokens", 0) or 0
    if usage is None or not (prompt or completion):  # nothing is known, not even the cost
        return LLMUsage(estimated_by=NO_USAGE, model=model)
    details = getattr(usage, "prompt_tokens_details", None)
    cost: float | None
    if model.startswith("offline/"):
        cost = 0.0  # free, as LiteLLM's table says too; skips its per-call cost look-up
    else:
        cost = _completion_cost(response, model)
    reported = (getattr(response, "_hidden_params", None) or {}).get("usage_reported", True)
    return LLMUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=getattr(details, "cached_tokens", 0) or 0,
        cost_usd=cost,
        # A stream without a usage chunk: LiteLLM counted the text itself (`streaming.py`).
        estimated_by=None if reported else LITELLM_ESTIMATE,
        model=model,
    )


def _completion_cost(response: ModelResponse, model: str) -> float | None:
    """LiteLLM's price of the call, or None when it has no price for the model."""
    try:
        # LiteLLM prices the model the provider says answered (`response.model`), with the
        # provider of `model`, the model that answered after any fallbacks.
        return float(litellm_module().completion_cost(completion_response=response, model=model))
    except Exception:  # "This model isn't mapped yet": LiteLLM has no price for it
        return None


@dataclass(frozen=True)
class BudgetSettings:
    """The operator's budget per conversation, from the orchestrator worker's environment.

    Read by the worker at each LLM call, like the model, so nobody who starts or chats in a
    conversation can change it; raising it takes effect at the next message.
    """

    max_total_tokens: int | None = None
    max_cost_usd: float | None = None

    @classmethod
    def from_env(cls) -> BudgetSettings:
        """AGENT_MAX_TOKENS and AGENT_MAX_COST_USD (unset or empty: no limit); ValueError if bad."""
        load_env()
        tokens = os.environ.get("AGENT_MAX_TOKENS", "").strip()
        cost = os.environ.get("AGENT_MAX_COST_USD", "").strip()
        try:
            max_tokens = int(tokens.replace("_", "")) if tokens else None
        except ValueError:
            max_tokens = -1
        try:
            max_cost = float(cost.removeprefix("$")) if cost else None
        except ValueError:
            max_cost = -1.0
        if max_tokens is not None and max_tokens < 0:
            raise ValueError(f"AGENT_MAX_TOKENS must be a whole number of tokens, not {tokens!r}")
        if max_cost is not None and not max_cost >= 0:  # also refuses nan
            raise ValueError(f"AGENT_MAX_COST_USD must be an amount in US dollars, not {cost!r}")
        return cls(max_tokens, max_cost)

    def describe(self) -> str:
        limits = []
        if self.max_total_tokens is not None:
            limits.append(f"{self.max_total_tokens:,} tokens")
        if self.max_cost_usd is not None:
            limits.append(f"${self.max_cost_usd:g}")
        return " or ".join(limits) + " per conversation" if limits else "no limit"

    def refusal(self, spent: UsageTotals) -> str | None:
        """None while this budget allows another call, else the answer that explains why not."""
        return budget_refusal(
            spent,
            self.max_total_tokens,
            self.max_cost_usd,
            settings=("AGENT_MAX_TOKENS", "AGENT_MAX_COST_USD"),
            how_to_raise=(
                "To go on, raise {setting} (or unset it) where the orchestrator worker runs and "
                "restart the worker, or start a new conversation with /new."
            ),
        )


def for_provider(model: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`messages` adjusted to what `model`'s API accepts."""
    messages = [with_json_arguments(m) for m in messages]
    try:
        provider = litellm_module().get_llm_provider(model)[1]
    except Exception:  # a model string LiteLLM cannot place; it will say so when called
        provider = None
    if provider != "anthropic" and "claude" not in model:
        return messages
    # An assistant message that only calls tools carries `content: ""` (llama.cpp's chat
    # templates fail without it), but Anthropic rejects empty text and LiteLLM would replace it
    # with a placeholder sentence the model then reads: send the tool calls alone.
    return [
        {key: value for key, value in m.items() if key != "content"}
        if m["role"] == "assistant" and m.get("tool_calls") and not m.get("content")
        else m
        for m in messages
    ]


def split_credentials(api_base: str | None) -> tuple[str | None, str | None]:
    """`api_base` without `user:password@`, and those credentials as a Basic auth header."""
    parts = urlsplit(api_base or "")
    if api_base is None or (parts.username is None and parts.password is None):
        return api_base, None
    # LiteLLM's aiohttp transport refuses a URL with credentials ("Cannot combine AUTHORIZATION
    # header with ... credentials encoded in URL"): send them as the header httpx would build.
    userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    token = base64.b64encode(userinfo.encode()).decode()
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def redact(text: str, settings: LLMSettings | None = None) -> str:
    """`text` without the API key or credentials embedded in URLs, for errors and logs."""
    settings = settings or LLMSettings.from_env()
    secrets = [settings.api_key] + [
        value
        for name, value in os.environ.items()
        if value and len(value) >= 8 and re.search(r"(API_KEY|TOKEN|SECRET)$", name)
    ]
    basic_auth = split_credentials(settings.api_base)[1]
    if basic_auth:
        # A provider may echo the password alone, or the header it was sent in.
        password = urlsplit(settings.api_base or "").password or ""
        secrets += [password, unquote(password), basic_auth.removeprefix("Basic ")]
    for secret in filter(None, secrets):
        text = text.replace(secret, "[redacted]")
    return re.sub(r"(\w+://)[^/@\s]+@", r"\1[redacted]@", text)

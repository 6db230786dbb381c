"""Which LLM the agent uses, and the one call it makes to it through LiteLLM.

Switching models is one line: edit `DEFAULT_MODEL`, or set `LLM_MODEL` in the environment or
`.env` to any LiteLLM model string (`gpt-4o-mini`, `anthropic/claude-...`, `gemini/...`,
`ollama_chat/...`). When the chosen model has no credentials, the deterministic offline model
answers instead, so the sample runs on a machine with no key and no network. Provider settings
and keys are read here, inside the worker, and never travel through Temporal.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from app.core.config import load_env

if TYPE_CHECKING:
    from litellm import ModelResponse

# Switch models here (or with LLM_MODEL); any LiteLLM model string works.
DEFAULT_MODEL = "openai/gpt-4o-mini"

OFFLINE_MODEL = "offline/agent"
OFFLINE_HINT = "offline model: set LLM_MODEL and a provider key for a real LLM"

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
        )


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
    import litellm

    from app.agent.offline_model import OfflineAgentLLM

    if not any(p.get("provider") == "offline" for p in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": "offline", "custom_handler": OfflineAgentLLM()},
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


async def complete(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    settings: LLMSettings | None = None,
    on_text: Callable[[str], None] | None = None,
) -> tuple[ModelResponse, str]:
    """One chat completion with native tool calling; returns the response and the model used.

    With `on_text`, the answer is streamed: `on_text` gets each piece of text as it arrives, and
    the response returned is rebuilt from the chunks, the same as without streaming.
    """
    settings = settings or LLMSettings.from_env()
    model = choose_model(settings).model
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": messages,
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
    if on_text is None:
        response = await litellm_module().acompletion(**kwargs)
    else:
        response = await _streamed(kwargs, on_text)
    # LiteLLM's fallbacks say in a response header which of the models answered.
    headers = getattr(response, "_hidden_params", {}).get("additional_headers") or {}
    models = [model, *settings.fallbacks]
    attempted = int(headers.get("x-litellm-attempted-fallbacks") or 0)
    return response, models[attempted] if attempted < len(models) else model


async def _streamed(kwargs: dict[str, Any], on_text: Callable[[str], None]) -> ModelResponse:
    """The completion streamed, text passed to `on_text`, then rebuilt as one response."""
    litellm = litellm_module()
    stream = await litellm.acompletion(
        **kwargs, stream=True, stream_options={"include_usage": True}
    )
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        delta = chunk.choices[0].delta if chunk.choices else None
        # Tool-call deltas are partial JSON: only the rebuilt message carries them.
        if delta is not None and isinstance(delta.content, str) and delta.content:
            on_text(delta.content)
    response = litellm.stream_chunk_builder(chunks, messages=kwargs["messages"])
    if response is None:
        raise ValueError("the LLM's stream ended without any chunk")
    # Which model answered (fallbacks) is in the stream's headers, not in the rebuilt response.
    hidden = getattr(stream, "_hidden_params", None) or {}
    response._hidden_params = {**getattr(response, "_hidden_params", {}), **hidden}
    return response


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

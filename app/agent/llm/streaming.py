"""A streamed completion, accepted only when the provider said it ended.

LiteLLM ends a stream that stopped early (a server that gave up, a proxy that timed out) with a
finish reason of its own, so half an answer would look whole and a half-written tool call would
run. Here a stream counts only when the provider sent its own end: a finish reason on OpenAI's
wire, a stop reason on Anthropic's; otherwise the attempt fails with `StreamIncomplete`, which
Temporal retries. A stream that fails midway falls back to the next model in `LLM_FALLBACKS`,
as a failure before the stream does, after the failed model's text is voided.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.agent.llm.client import for_provider, litellm_module

if TYPE_CHECKING:
    from litellm import ModelResponse

logger = logging.getLogger(__name__)


class StreamIncomplete(Exception):
    """The provider's stream ended before the provider said the reply was complete: no finish
    reason on OpenAI's wire, no stop reason on Anthropic's, or no chunk at all."""


async def streamed_with_fallbacks(
    kwargs: dict[str, Any],
    models: list[str],
    messages: list[dict[str, Any]],
    on_text: Callable[[str], None],
    on_restart: Callable[[], None] | None,
) -> tuple[ModelResponse, str]:
    """A streamed completion; a stream that fails midway falls back to the next model.

    LiteLLM's own fallbacks cover failures before the stream starts; midway it raises
    `MidStreamFallbackError` instead (and we raise `StreamIncomplete`), so the next model is
    called here, with the same rules, after the failed model's text is voided.
    """
    remaining = list(models)
    while True:
        try:
            response, stream = await _streamed(kwargs, on_text)
            return response, answering_model(stream, remaining)
        except Exception as err:
            if not _failed_midway(err) or not kwargs.get("fallbacks"):
                raise
            failed = answering_model(getattr(err, "stream", None), remaining)
            remaining = remaining[remaining.index(failed) + 1 :]
            if not remaining:
                raise
            logger.warning(
                "LLM stream from %s failed midway (%s); falling back to %s",
                failed,
                type(err).__name__,
                remaining[0],
            )
            if on_restart is not None:
                on_restart()
            kwargs = {
                **kwargs,
                "model": remaining[0],
                "messages": for_provider(remaining[0], messages),
                "fallbacks": remaining[1:] or None,
            }
            kwargs = {key: value for key, value in kwargs.items() if value is not None}


def answering_model(response: Any, models: list[str]) -> str:
    """Which of `models` answered: LiteLLM's fallbacks say so in a response header."""
    headers = getattr(response, "_hidden_params", {}).get("additional_headers") or {}
    attempted = int(headers.get("x-litellm-attempted-fallbacks") or 0)
    return models[attempted] if attempted < len(models) else models[0]


def _failed_midway(err: Exception) -> bool:
    return isinstance(err, StreamIncomplete) or type(err).__name__ == "MidStreamFallbackError"


async def _streamed(
    kwargs: dict[str, Any], on_text: Callable[[str], None]
) -> tuple[ModelResponse, Any]:
    """The completion streamed, text passed to `on_text`, then rebuilt as one response; with the
    stream, whose headers say which model answered."""
    litellm = litellm_module()
    stream = await litellm.acompletion(
        **kwargs, stream=True, stream_options={"include_usage": True}
    )
    chunks = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
            delta = chunk.choices[0].delta if chunk.choices else None
            # Tool-call deltas are partial JSON: only the rebuilt message carries them.
            if delta is not None and isinstance(delta.content, str) and delta.content:
                on_text(delta.content)
    except Exception as err:
        err.stream = stream  # type: ignore[attr-defined]  # which model failed midway
        raise
    finish = _finish_reason(stream, chunks)
    if finish is None:
        # LiteLLM ends a stream that stopped early with a finish reason of its own ("stop"):
        # accepting it would show half an answer as whole, or run a half-written tool call.
        error = StreamIncomplete(
            f"the LLM's reply stopped after {len(chunks)} chunks, before the provider said it "
            "was complete"
        )
        error.stream = stream  # type: ignore[attr-defined]
        # What the failed call used still counts (LiteLLM's estimate, unless the usage came).
        error.partial_response = _rebuilt(litellm, chunks, kwargs, stream)  # type: ignore[attr-defined]
        raise error
    response = litellm.stream_chunk_builder(chunks, messages=kwargs["messages"])
    if response is None:
        raise StreamIncomplete("the LLM's stream ended without any chunk")
    response.choices[0].finish_reason = finish
    # Which model answered (fallbacks) is in the stream's headers, not in the rebuilt response.
    hidden = getattr(stream, "_hidden_params", None) or {}
    response._hidden_params = {
        **getattr(response, "_hidden_params", {}),
        **hidden,
        "usage_reported": _usage_reported(stream),
    }
    return response, stream


def _rebuilt(litellm: Any, chunks: list[Any], kwargs: dict[str, Any], stream: Any) -> Any:
    """The chunks of a cut stream rebuilt as one response, for its usage; None if none came."""
    if not chunks:
        return None
    try:
        response = litellm.stream_chunk_builder(chunks, messages=kwargs["messages"])
    except Exception:  # a courtesy for the usage count: the failure is what matters
        return None
    if response is not None:
        response._hidden_params = {"usage_reported": _usage_reported(stream)}
    return response


def _usage_reported(stream: Any) -> bool:
    """Whether the provider sent usage in its stream. LiteLLM counts tokens itself when it did
    not and passes that on as the usage chunk; only its record of the provider's own chunks
    tells the two apart."""
    provider_chunks = getattr(stream, "chunks", None)
    if not isinstance(provider_chunks, list):
        return True  # cannot tell: take the counts as the provider's
    return any(getattr(chunk, "usage", None) is not None for chunk in provider_chunks)


def _finish_reason(stream: Any, chunks: list[Any]) -> str | None:
    """The finish reason the provider sent, or None if it sent none."""
    if not chunks:
        return None
    # LiteLLM's stream wrapper keeps the provider's own reason apart from the one it makes up.
    if hasattr(stream, "received_finish_reason"):
        return stream.received_finish_reason or getattr(stream, "intermittent_finish_reason", None)
    reasons = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    return reasons[-1] if reasons else None

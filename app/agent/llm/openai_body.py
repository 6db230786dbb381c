"""The OpenAI client's request transform, done only where it changes something.

LiteLLM sends OpenAI-wire requests through the `openai` package, whose `chat.completions.create`
walks the whole body against its TypedDicts before sending it (`async_maybe_transform`), to rename
aliased keys and encode dates and files. The agent's bodies are plain JSON: text messages, tool
calls, tool results and JSON-schema tools, so the walk returns what it was given, minus the
arguments left out. It cost about 1 ms of CPU per message on every call, the largest part of the
LLM worker's work in a long conversation (`docs/performance.md`). `install()` skips the walk for
exactly those bodies and keeps it for everything else; `tests/test_openai_body.py` checks that
both give the same body.
"""

from __future__ import annotations

import importlib
from typing import Any

_INSTALLED = "_durable_agent_plain_body"


def plain_chat_body(data: object) -> bool:
    """Whether `data` is a chat completion body the transform would return unchanged: every
    message's content is text (or absent), and the tools are JSON-schema functions."""
    if not isinstance(data, dict):
        return False
    messages = data.get("messages")
    if not isinstance(messages, list):
        return False
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str | None):
            return False
    tools = data.get("tools")
    return tools is None or isinstance(tools, list)


def install() -> bool:
    """Skip the transform for plain chat bodies; idempotent. False, and the transform left as it
    is (slower, never wrong), where this `openai` version names things otherwise."""
    try:
        module = importlib.import_module("openai.resources.chat.completions.completions")
        params = importlib.import_module("openai.types.chat.completion_create_params")
        given = importlib.import_module("openai._utils").is_given
        original = module.async_maybe_transform
        chat_types = (
            params.CompletionCreateParamsStreaming,
            params.CompletionCreateParamsNonStreaming,
        )
    except (ImportError, AttributeError):
        return False
    if getattr(original, _INSTALLED, False):
        return True

    async def transform(data: object, expected_type: object) -> Any:
        if expected_type in chat_types and plain_chat_body(data):
            assert isinstance(data, dict)
            return {key: value for key, value in data.items() if given(value)}
        return await original(data, expected_type)

    setattr(transform, _INSTALLED, True)
    setattr(module, "async_maybe_transform", transform)  # noqa: B010 (a module, not a class)
    return True

"""The OpenAI client's body transform is skipped only where it would change nothing.

`app/agent/llm/openai_body.py` skips `openai`'s walk of a chat completion body when the body is
plain JSON; these tests give the same bodies to the original transform and to the skip, and a
body the skip must leave to the original.
"""

from __future__ import annotations

import importlib
from typing import Any

import openai
import pytest

from app.agent.llm import openai_body
from app.agent.llm.client import litellm_module

completions = importlib.import_module("openai.resources.chat.completions.completions")
params = importlib.import_module("openai.types.chat.completion_create_params")
openai_utils = importlib.import_module("openai._utils")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    }
]
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are an agent."},
    {"role": "user", "content": "Calculate 15 * 23"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "15 * 23"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "345"},
    {"role": "assistant", "content": "15 * 23 = 345"},
]


def body(**extra: Any) -> dict[str, Any]:
    return {
        "messages": MESSAGES,
        "model": "gpt-4o-mini",
        "tools": TOOLS,
        "tool_choice": "auto",
        "temperature": 0.2,
        "max_tokens": 512,
        "stream": True,
        "stream_options": {"include_usage": True},
        "top_p": openai.omit,
        "user": openai.NOT_GIVEN,
    } | extra


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_plain_body_is_sent_as_the_transform_would_send_it(streaming: bool):
    litellm_module()  # installs the skip
    expected_type = (
        params.CompletionCreateParamsStreaming
        if streaming
        else params.CompletionCreateParamsNonStreaming
    )
    original = await openai_utils.async_maybe_transform(body(stream=streaming), expected_type)
    skipped = await completions.async_maybe_transform(body(stream=streaming), expected_type)
    assert completions.async_maybe_transform is not openai_utils.async_maybe_transform
    assert skipped == original
    assert "top_p" not in skipped and "user" not in skipped  # arguments left out stay out


async def test_a_body_with_content_parts_goes_through_the_transform():
    parts = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert not openai_body.plain_chat_body(body(messages=parts))
    assert openai_body.plain_chat_body(body())
    assert not openai_body.plain_chat_body({"messages": "not a list"})


def test_installing_twice_wraps_once():
    litellm_module()
    installed = completions.async_maybe_transform
    # True: this openai version has what the skip needs (else the walk stays, slower).
    assert openai_body.install() is True
    assert completions.async_maybe_transform is installed

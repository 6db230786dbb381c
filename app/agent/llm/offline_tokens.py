"""Token counts for the offline model, as a real model would report them.

The offline model costs nothing, but a conversation's usage (and its token budget) should look
like a real one's: the prompt with its tool schemas, and the reply, counted with LiteLLM's
`token_counter` and a tokenizer bundled with tiktoken (nothing is downloaded). Each step sends
the whole conversation again, so each message's count is remembered: a step tokenizes only what
is new, and the sum is exactly what `token_counter` gives for the whole prompt.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from litellm import token_counter
from litellm.types.utils import Usage

# Any model LiteLLM tokenizes with tiktoken's bundled encoding (no download).
_TOKENIZER_MODEL = "gpt-4o-mini"


def count_usage(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    text: str | None,
    tool_calls: list[tuple[str, dict[str, Any]]],
) -> Usage:
    """Tokens of the prompt (with the tools) and of the reply (its text, or its tool calls)."""
    prompt = prompt_tokens(messages, tools)
    written = text or json.dumps(tool_calls)
    completion = token_counter(model=_TOKENIZER_MODEL, text=written, count_response_tokens=True)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def prompt_tokens(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> int:
    """`token_counter(messages=messages, tools=tools)`, from remembered per-message counts."""
    with_system = any(message.get("role") == "system" for message in messages)
    framing = _framing_tokens(json.dumps(tools), with_system)
    return framing + sum(_message_tokens(json.dumps(message)) for message in messages)


@functools.lru_cache(maxsize=4096)
def _message_tokens(message: str) -> int:
    # Without the reply's framing, a message's count does not depend on the others.
    return token_counter(
        model=_TOKENIZER_MODEL, messages=[json.loads(message)], count_response_tokens=True
    )


@functools.lru_cache(maxsize=64)
def _framing_tokens(tools: str, with_system: bool) -> int:
    """What a prompt adds to its messages' tokens: the reply's priming and the tool schemas,
    which depend on whether the prompt has a system message."""
    probe = {"role": "system" if with_system else "user", "content": ""}
    schemas = json.loads(tools) or None
    framed = token_counter(model=_TOKENIZER_MODEL, messages=[probe], tools=schemas)
    return framed - _message_tokens(json.dumps(probe))


def load_tokenizer() -> None:
    """Load the tokenizer now (about a second), rather than in the first offline call."""
    token_counter(model=_TOKENIZER_MODEL, text="")

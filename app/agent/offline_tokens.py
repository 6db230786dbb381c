"""Token counts for the offline model, as a real model would report them.

The offline model costs nothing, but a conversation's usage (and its token budget) should look
like a real one's: the prompt with its tool schemas, and the reply, counted with LiteLLM's
`token_counter` and a tokenizer bundled with tiktoken (nothing is downloaded).
"""

from __future__ import annotations

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
    tool_params: Any = tools or None
    prompt = token_counter(model=_TOKENIZER_MODEL, messages=messages, tools=tool_params)
    written = text or json.dumps(tool_calls)
    completion = token_counter(model=_TOKENIZER_MODEL, text=written, count_response_tokens=True)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def load_tokenizer() -> None:
    """Load the tokenizer now (about a second), rather than in the first offline call."""
    token_counter(model=_TOKENIZER_MODEL, text="")

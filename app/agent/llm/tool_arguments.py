"""Tool-call arguments as every provider's wire can carry them.

A model may write arguments that are not JSON (cut short, or simply malformed). The tool runner
tells it so in a tool result; the call itself goes back in the next request, and Anthropic's wire
takes arguments as an object only (LiteLLM fails while building the request otherwise). So such
arguments travel as an object that holds the text as the model wrote it.
"""

from __future__ import annotations

import json
from typing import Any


def with_json_arguments(message: dict[str, Any]) -> dict[str, Any]:
    """`message` with each tool call's arguments as a JSON object.

    A model may write arguments that are not JSON (cut short, or simply malformed); the tool
    result tells it so. Sent back as written, they make LiteLLM fail while it builds the next
    request for Anthropic's wire, which takes an object: so they travel as one, holding the text.
    """
    calls = message.get("tool_calls")
    if not calls or all(is_json_object(c["function"]["arguments"]) for c in calls):
        return message
    repaired = [
        call
        if is_json_object(call["function"]["arguments"])
        else {
            **call,
            "function": {
                **call["function"],
                "arguments": json.dumps({"unparsed_arguments": call["function"]["arguments"]}),
            },
        }
        for call in calls
    ]
    return {**message, "tool_calls": repaired}


def is_json_object(arguments: str | None) -> bool:
    """Whether a tool call's arguments are a whole JSON object."""
    try:
        return isinstance(json.loads(arguments or "{}"), dict)
    except ValueError:
        return False

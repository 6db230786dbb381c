"""Turning a Temporal error's cause chain into the one message a person or an LLM should read."""

from __future__ import annotations


def failure_message(err: BaseException) -> str:
    """The most specific message in an error's cause chain, for the LLM or the user."""
    messages = []
    current: BaseException | None = err
    while current is not None:
        messages.append(getattr(current, "message", None) or str(current))
        current = current.__cause__
    return next((m for m in reversed(messages) if m), "unknown error")

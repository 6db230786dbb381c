"""Pure functions over the conversation history, used by the deterministic workflow.

They decide what part of a long conversation each planning call sees, so that the payload of every
`plan_next_action` call (and so the event history per turn) stays bounded however long the chat.
"""

from __future__ import annotations

from app.agent.models import Message


def message_size(message: Message) -> int:
    """A cheap size measure: the characters of the message's text and tool arguments."""
    return len(message.content or "") + sum(
        len(call.name) + len(call.arguments) for call in message.tool_calls
    )


def planner_window(
    history: list[Message], budget_chars: int, max_messages: int | None = None
) -> list[Message]:
    """The newest whole turns within both budgets; the current turn is always included."""
    turn_starts = [i for i, message in enumerate(history) if message.role == "user"]
    if not turn_starts:
        return list(history)
    start = turn_starts[-1]
    used = sum(message_size(m) for m in history[start:])
    # Walk back one whole turn at a time, so a tool result never loses its tool call.
    for previous in reversed(turn_starts[:-1]):
        turn_size = sum(message_size(m) for m in history[previous:start])
        too_many = max_messages is not None and len(history) - previous > max_messages
        if used + turn_size > budget_chars or too_many:
            break
        used += turn_size
        start = previous
    return history[start:]

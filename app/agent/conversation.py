"""Pure functions over the conversation history, used by the deterministic workflow.

They decide what part of a long conversation each planning call sees, so that the payload of every
`plan_next_action` call (and so the event history per turn) stays bounded however long the chat,
and so that a turn that ended in an LLM failure is never sent to the LLM again. They also cut
the history queries into pages that stay below gRPC's 4 MB.
"""

from __future__ import annotations

from app.agent.models import ConversationView, HistoryPage, Message, PlanInput, utf8_size

# The most a history query answers with: gRPC refuses messages over 4 MB.
MAX_QUERY_BYTES = 3_000_000


def message_size(message: Message) -> int:
    """A cheap size measure: the characters of the message's text and tool arguments."""
    return len(message.content or "") + sum(
        len(call.name) + len(call.arguments) for call in message.tool_calls
    )


def message_bytes(message: Message) -> int:
    """The message's share of a planning input's JSON payload, in bytes."""
    # The comma that separates it from the next one.
    return utf8_size(message.model_dump_json()) + 1


def plan_input_bytes(messages: list[Message]) -> int:
    """The size of `PlanInput(messages=messages)` as JSON, in bytes."""
    return utf8_size(PlanInput(messages=messages).model_dump_json())


def planner_window(
    history: list[Message],
    budget_chars: int,
    max_messages: int | None = None,
    budget_bytes: int | None = None,
) -> list[Message]:
    """The newest whole turns within the budgets; the current turn is always included.

    Messages marked `skip_in_planning` (a failed turn's) are left out.
    """
    history = [message for message in history if not message.skip_in_planning]
    turn_starts = [i for i, message in enumerate(history) if message.role == "user"]
    if not turn_starts:
        return list(history)
    start = turn_starts[-1]
    used = sum(message_size(m) for m in history[start:])
    used_bytes = sum(message_bytes(m) for m in history[start:]) if budget_bytes else 0
    # Walk back one whole turn at a time, so a tool result never loses its tool call.
    for previous in reversed(turn_starts[:-1]):
        turn = history[previous:start]
        turn_size = sum(message_size(m) for m in turn)
        turn_bytes = sum(message_bytes(m) for m in turn) if budget_bytes else 0
        too_many = max_messages is not None and len(history) - previous > max_messages
        too_big = budget_bytes is not None and used_bytes + turn_bytes > budget_bytes
        if used + turn_size > budget_chars or too_many or too_big:
            break
        used += turn_size
        used_bytes += turn_bytes
        start = previous
    return history[start:]


def newest_within(history: list[Message], end: int, max_bytes: int) -> int:
    """Where the newest messages of `history[:end]` that fit in `max_bytes` start (one at least)."""
    start, used = end, 0
    while start > 0:
        size = message_bytes(history[start - 1])
        if used + size > max_bytes and start < end:
            break
        used += size
        start -= 1
    return start


def history_page(history: list[Message], earlier: int, page: HistoryPage) -> ConversationView:
    """The page of this run's `history` (after `earlier` messages of earlier runs) asked for."""
    end = len(history)
    if page.before is not None:
        end = max(0, min(end, page.before - earlier))
    start = newest_within(history, end, min(page.max_bytes, MAX_QUERY_BYTES))
    return ConversationView(messages=history[start:end], earlier_messages=earlier + start)

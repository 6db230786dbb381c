"""The planner window: bounded, made of whole turns, always holding the current turn."""

from __future__ import annotations

from app.agent.conversation import plan_input_bytes, planner_window
from app.agent.models import Message, ToolCall


def turn(text: str, tool_output: str | None = None) -> list[Message]:
    messages = [Message.user(text)]
    if tool_output is not None:
        call = ToolCall(id=f"id-{text}", name="echo", arguments="{}")
        messages += [
            Message(role="assistant", tool_calls=[call]),
            Message.tool_result(call, tool_output),
        ]
    return messages + [Message.assistant(f"answer to {text}")]


def test_short_conversations_are_sent_whole():
    history = turn("a") + turn("b", "out") + [Message.user("c")]
    assert planner_window(history, 10_000) == history


def test_window_drops_oldest_whole_turns():
    history = turn("first", "x" * 500) + turn("second") + [Message.user("third")]
    window = planner_window(history, 100)
    assert window[0] == Message.user("second")
    assert window[-1] == Message.user("third")


def test_a_tool_result_never_loses_its_tool_call():
    history = turn("a", "y" * 50) + turn("b", "y" * 50) + [Message.user("c")]
    for budget in range(0, 400, 7):
        window = planner_window(history, budget)
        assert window[0].role == "user"
        ids = {call.id for m in window for call in m.tool_calls}
        assert all(m.tool_call_id in ids for m in window if m.role == "tool")


def test_the_current_turn_is_kept_even_when_it_alone_is_over_budget():
    history = turn("old") + [Message.user("z" * 1000)]
    assert planner_window(history, 10) == [Message.user("z" * 1000)]


def test_window_is_bounded_by_message_count():
    history = turn("a", "1") + turn("b", "2") + turn("c", "3") + [Message.user("d")]
    assert planner_window(history, 10_000, max_messages=9) == history[4:]
    assert planner_window(history, 10_000, max_messages=8) == history[8:]
    assert planner_window(history, 10_000, max_messages=1) == [Message.user("d")]


def test_window_leaves_out_failed_turns():
    failed = [
        Message.user("poison").model_copy(update={"skip_in_planning": True}),
        Message.assistant("Sorry, ...").model_copy(update={"skip_in_planning": True}),
    ]
    history = turn("a") + failed + [Message.user("b")]
    assert planner_window(history, 10_000) == turn("a") + [Message.user("b")]


def test_window_is_bounded_by_utf8_bytes_not_characters():
    # 300 characters, 1,200 bytes: within a 1,000-character budget, over a 1,000-byte one.
    history = turn("old", "😀" * 300) + [Message.user("new")]
    assert planner_window(history, 1_000) == history
    assert planner_window(history, 1_000, budget_bytes=1_000) == [Message.user("new")]
    assert plan_input_bytes(planner_window(history, 1_000, budget_bytes=1_600)) <= 1_600

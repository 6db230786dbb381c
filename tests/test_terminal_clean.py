"""What the model or a tool wrote reaches the user's terminal without its control sequences.

A tool result that retitles the terminal (OSC 0) and clears the screen, and the other kinds of
escape sequence and control character, are removed by `clean`, and every line the chat prints
(`Terminal.say`, `note`, `error`), piped or not, goes through it; newlines and tabs stay.
"""

from __future__ import annotations

import io

import pytest

from app.agent.models import Message
from app.cli.chat.terminal import Terminal, clean, format_history

HOSTILE_TOOL_RESULT = "\x1b]0;PWNED-TITLE\x07\x1b[2J\x1b[HProject OPS: 3 open issues"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (HOSTILE_TOOL_RESULT, "Project OPS: 3 open issues"),
        ("\x1b]0;PWNED-TITLE\x1b\\title set with ST", "title set with ST"),
        ("\x1b]8;;https://evil.example\x07link\x1b]8;;\x07", "link"),
        ("\x1b[31mred\x1b[0m \x1b[?1049h", "red "),
        ("\x1bPq#0;2;0;0;0\x1b\\sixel", "sixel"),
        ("\x1bcreset \x1b(B charset \x1b7saved", "reset  charset saved"),
        ("bell\x07 back\x08 cr\r del\x7f c1\x9b2J", "bell back cr del c12J"),
        ("lone escape \x1b", "lone escape "),
        ("lines\nand\ttabs stay", "lines\nand\ttabs stay"),
        ("plain text, ünïcödé and emoji 🙂", "plain text, ünïcödé and emoji 🙂"),
    ],
)
def test_clean_removes_every_control_sequence_and_keeps_the_text(text: str, shown: str):
    assert clean(text) == shown


def piped_terminal() -> tuple[Terminal, io.StringIO, io.StringIO]:
    stdout, stderr = io.StringIO(), io.StringIO()
    return Terminal(io.StringIO(), stdout, stderr), stdout, stderr


def test_a_piped_chat_prints_a_hostile_tool_result_harmlessly():
    terminal, stdout, stderr = piped_terminal()
    assert not terminal.live
    tool_turn = [
        Message.user("metrics please"),
        Message(role="tool", name="jira_metrics", content=HOSTILE_TOOL_RESULT, tool_call_id="c1"),
        Message.assistant(f"Here: {HOSTILE_TOOL_RESULT}"),
    ]
    for line in format_history(tool_turn, 0):
        terminal.say(line)
    terminal.note(f"usage: model \x1b]0;PWNED-TITLE\x07offline {HOSTILE_TOOL_RESULT}")
    terminal.error(f"Error: the tool failed: {HOSTILE_TOOL_RESULT}")
    printed = stdout.getvalue() + stderr.getvalue()
    assert "\x1b" not in printed and "\x07" not in printed and "PWNED" not in printed
    assert stdout.getvalue().splitlines() == [
        "You: metrics please",
        "    <- jira_metrics: Project OPS: 3 open issues",
        "Agent: Here: Project OPS: 3 open issues",
        "usage: model offline Project OPS: 3 open issues",
    ]
    assert stderr.getvalue() == "Error: the tool failed: Project OPS: 3 open issues\n"

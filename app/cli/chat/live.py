"""The turn as the conversation's Workflow Stream tells it, and what a terminal shows of it.

`follow_turn` subscribes to the conversation's stream (`WorkflowStreamClient`, experimental in
temporalio 1.35) from the offset the turn started at, hands on only that turn's events, and
resubscribes from the last offset it saw when the connection drops, so every event is handed on
once. `turn_in_progress` finds the turn a conversation is working on when the chat attaches (a
client restarted mid-turn), with the offset its events start at. `LiveView` turns the events
into what the terminal draws: a line per tool call as it starts and ends (`not run` for a call
whose approval was refused), the answer's text as it arrives (its end only, when it is taller
than the terminal), and a spinner with what the agent is doing. Everything the model or a tool
wrote is stripped of control sequences first: an answer cannot retitle or clear the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from rich.console import Console, Group
from rich.spinner import Spinner
from rich.text import Text
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from app.agent.models import AgentResult
from app.agent.stream.events import (
    EVENT_TYPE,
    EVENTS_TOPIC,
    AgentEvent,
    ApprovalDecided,
    ApprovalRequested,
    DropPartialText,
    LLMAttemptFailed,
    PlanningStep,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnAnswered,
)
from app.agent.workflow import AgentWorkflow
from app.core.connection import one_line

RECONNECT_SECONDS = 1.0
# Lines of the terminal the live part leaves free (the spinner and the line above it).
LIVE_MARGIN_LINES = 3
# How long the chat waits for the answer to a query it makes on its own (status, approvals).
QUERY_TIMEOUT = timedelta(seconds=2)
# How long it waits for one the user asked for (/history, /usage): a busy server may take longer,
# and the user waits for this answer anyway.
COMMAND_QUERY_TIMEOUT = timedelta(seconds=10)
# How much of a turn's message a rejoining client shows.
MESSAGE_SHOWN = 200
# What a model or a tool may write that a terminal would obey (retitle it, clear it, move the
# cursor, ...): CSI sequences; OSC, DCS, SOS, PM and APC strings; other escape sequences; a lone
# ESC; and every C0 and C1 control except newline and tab.
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x1b"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def clean(text: str) -> str:
    """`text` without terminal control sequences, safe to print on a terminal or into a pipe."""
    return _CONTROL.sub("", text)


class LiveView:
    """What one turn looks like on a terminal while it runs: lines to print, and a live part.

    `apply` turns an event into the lines that stay (tool calls, failed attempts); `render` is
    the part the terminal redraws in place (the text being written, a spinner). It draws
    nothing itself: the chat's `Terminal` owns the screen.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.doing = "sending"
        self.partial = ""
        self.started = time.monotonic()
        self.model: str | None = None
        self._spinner = Spinner("dots")
        # Tools whose approval was refused (denied, timed out): their end line says "not run".
        self._requested: dict[str, str] = {}
        self._refused: dict[str, list[str]] = {}

    def apply(self, event: AgentEvent) -> list[Text]:
        """Take in one of the turn's events; the lines to print above the live part."""
        lines: list[Text] = []
        if isinstance(event, PlanningStep):
            lines += self._commit_partial()
            self.doing = "thinking" if event.step == 1 else f"thinking (step {event.step})"
        elif isinstance(event, TextDelta):
            self.partial += clean(event.text)
            self.doing = "writing"
        elif isinstance(event, DropPartialText):
            self.partial = ""
        elif isinstance(event, LLMAttemptFailed):
            again = "; trying again" if event.will_retry else ""
            lines.append(
                _line(f"  ! LLM attempt {event.attempt} failed: {event.error}{again}", "yellow")
            )
        elif isinstance(event, ToolCallStarted):
            lines += self._commit_partial()
            via = f" via {event.endpoint}" if event.endpoint else ""
            lines.append(_line(f"  -> {event.tool}({one_line(event.arguments, 80)}){via}", "cyan"))
            self.doing = f"calling {clean(event.tool)}"
        elif isinstance(event, ApprovalRequested):
            self._requested[event.approval_id] = event.tool
            self.doing = f"waiting for your approval of {clean(event.tool)}"
        elif isinstance(event, ApprovalDecided):
            tool = self._requested.pop(event.approval_id, None)
            if tool is not None and event.outcome != "approved":
                self._refused.setdefault(tool, []).append(event.outcome.replace("_", " "))
        elif isinstance(event, ToolCallFinished):
            lines.append(
                _line(f"  <- {event.tool} {self._outcome(event)} ({event.duration_ms} ms)", "dim")
            )
        elif isinstance(event, TurnAnswered):
            self.model = event.model
            self.doing = "answered"
        return lines

    def _outcome(self, event: ToolCallFinished) -> str:
        refused = self._refused.get(event.tool)
        if refused:
            # The workflow reports a refused call's result as a result; it did not run.
            return f"not run: {refused.pop(0)}"
        return "ok" if event.ok else f"failed: {one_line(event.error or '', 100)}"

    def _commit_partial(self) -> list[Text]:
        # Text the model wrote before calling tools stays on screen above the tool lines.
        text, self.partial = self.partial.strip(), ""
        return [_line("Agent: " + text, "")] if text else []

    def render(self) -> Group:
        """The live part: the end of the text being written (never taller than the terminal,
        so nothing of it scrolls into the scrollback), and the spinner."""
        elapsed = time.monotonic() - self.started
        self._spinner.text = Text(f"{self.doing} ({elapsed:.1f} s)", style="dim")
        parts: list[Text | Spinner] = []
        if self.partial:
            text = Text("Agent: ", style="bold") + Text(self.partial)
            lines = text.wrap(self.console, max(self.console.width, 10))
            room = max(self.console.height - LIVE_MARGIN_LINES, 1)
            parts += list(lines)[-room:]
        parts.append(self._spinner)
        return Group(*parts)


def _line(text: str, style: str) -> Text:
    return Text(clean(text), style=style)


async def follow_turn(
    client: Client,
    conversation_id: str,
    turn_id: str,
    from_offset: int,
    deliver: Callable[[AgentEvent], None],
    caught_up: Callable[[], None],
    polling: asyncio.Event | None = None,
) -> None:
    """Hand each event of turn `turn_id` to `deliver` until its answer, reconnecting where it
    left off; `caught_up` once the events published before the call are handed over.

    `polling` is set as the first poll leaves (the workflow streams text only to watchers)."""
    stream = WorkflowStreamClient.create(client, conversation_id)
    offset = from_offset
    try:
        published = await stream.get_offset()
    except Exception:  # no worker to answer the query: nothing to catch up with yet
        published = 0
    told = offset >= published
    if told:
        caught_up()
    if polling is not None:
        # The subscription's first poll is sent before this task next yields.
        polling.set()
    while True:
        try:
            async for item in stream.subscribe(
                [EVENTS_TOPIC],
                offset,
                result_type=EVENT_TYPE,
                poll_cooldown=timedelta(milliseconds=50),
            ):
                offset = item.offset + 1
                if item.data.turn_id == turn_id:
                    deliver(item.data)
                if offset >= published and not told:
                    told = True
                    caught_up()
                if item.data.turn_id == turn_id and isinstance(item.data, TurnAnswered):
                    return
            return  # the conversation ended and its stream is drained
        except asyncio.CancelledError:
            raise
        except Exception:  # the server restarting, a worker gone: the answer still comes
            await asyncio.sleep(RECONNECT_SECONDS)


@dataclass(frozen=True)
class TurnInProgress:
    """A turn the conversation is working on: its Update id, where its events start, and its
    message (on one line, shortened, safe to print)."""

    turn_id: str
    offset: int
    message: str


async def turn_in_progress(
    handle: WorkflowHandle[AgentWorkflow, AgentResult],
) -> TurnInProgress | None:
    """The turn the conversation is working on, or None (idle, or the worker does not answer)."""
    try:
        status = await handle.query(AgentWorkflow.get_status, rpc_timeout=QUERY_TIMEOUT)
        if status.turn_id is None or status.turn_offset is None:
            return None
        view = await handle.query(AgentWorkflow.get_history, rpc_timeout=QUERY_TIMEOUT)
    except Exception:  # no worker, a failing workflow task: the chat starts at its prompt
        return None
    # The turn's own message is the history's last one written by the user.
    asked = [m.content for m in view.messages if m.role == "user" and m.content]
    message = clean(one_line(asked[-1], MESSAGE_SHOWN)) if asked else ""
    return TurnInProgress(status.turn_id, status.turn_offset, message)


async def wait_briefly(awaitable: Awaitable[object], seconds: float) -> None:
    """Await `awaitable` for at most `seconds`: what it waits for is a courtesy, not a must."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(awaitable, seconds)

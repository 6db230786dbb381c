"""The live view of a turn on a terminal: the conversation's Workflow Stream, rendered with rich.

`follow_turn` subscribes to the conversation's stream (`WorkflowStreamClient`, experimental in
temporalio 1.35) from the offset the turn started at, keeps only that turn's events, and
resubscribes from the last offset it saw when the connection drops, so every event is shown
once. `turn_in_progress` finds the turn a conversation is working on when the chat attaches (a
client restarted mid-turn), with the offset its events start at. `LiveView` shows the answer's
text as it arrives, a line per tool call as it starts and ends, a spinner with what the agent is
doing, and the finished answer as Markdown. Everything the model or a tool wrote is stripped of
control sequences first: an answer cannot retitle or clear the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from app.agent.models import AgentResult
from app.agent.stream.events import (
    EVENT_TYPE,
    EVENTS_TOPIC,
    AgentEvent,
    DropPartialText,
    LLMAttemptFailed,
    PlanningStep,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnAnswered,
)
from app.agent.workflow import AgentWorkflow
from app.cli.chat.terminal import clean
from app.core.connection import one_line

RECONNECT_SECONDS = 1.0
# How long a rejoining client waits for the turn's past events before it asks anything.
CATCH_UP_SECONDS = 3.0
# How long the chat waits for the answer to a query (status, history, usage, approvals).
QUERY_TIMEOUT = timedelta(seconds=2)
# How much of a turn's message a rejoining client shows.
MESSAGE_SHOWN = 200


class LiveView:
    """What one turn looks like on a terminal while it runs, then its answer."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.doing = "sending"
        self.partial = ""
        self.started = time.monotonic()
        # When the stream last said something: long silences are explained by the session.
        self.last_event = time.monotonic()
        self.model: str | None = None
        # Set once the events published before the view began are shown (see follow_turn).
        self.caught_up = asyncio.Event()
        self._spinner = Spinner("dots")
        self._live = Live(
            get_renderable=self._render,
            console=console,
            transient=True,
            refresh_per_second=10,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def __enter__(self) -> LiveView:
        self._live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._live.stop()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Step aside while something else prints a line (an error on stderr)."""
        running = self._live.is_started
        self._live.stop()
        try:
            yield
        finally:
            if running:
                self._live.start()

    def apply(self, event: AgentEvent) -> None:
        """Show one of the turn's events."""
        self.last_event = time.monotonic()
        if isinstance(event, PlanningStep):
            self._commit_partial()
            self.doing = "thinking" if event.step == 1 else f"thinking (step {event.step})"
        elif isinstance(event, TextDelta):
            self.partial += clean(event.text)
            self.doing = "writing"
        elif isinstance(event, DropPartialText):
            self.partial = ""
        elif isinstance(event, LLMAttemptFailed):
            again = "; trying again" if event.will_retry else ""
            self._print(f"  ! LLM attempt {event.attempt} failed: {event.error}{again}", "yellow")
        elif isinstance(event, ToolCallStarted):
            self._commit_partial()
            via = f" via {event.endpoint}" if event.endpoint else ""
            self._print(f"  -> {event.tool}({one_line(event.arguments, 80)}){via}", "cyan")
            self.doing = f"calling {clean(event.tool)}"
        elif isinstance(event, ToolCallFinished):
            outcome = "ok" if event.ok else f"failed: {one_line(event.error or '', 100)}"
            self._print(f"  <- {event.tool} {outcome} ({event.duration_ms} ms)", "dim")
        elif isinstance(event, TurnAnswered):
            self.model = event.model
            self.doing = "answered"

    def answer(self, text: str) -> None:
        """The finished answer, as Markdown, in place of its streamed text."""
        self.partial = ""
        self._live.stop()
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("Agent:", Markdown(clean(text)))
        self.console.print(grid)

    def _commit_partial(self) -> None:
        # Text the model wrote before calling tools stays on screen above the tool lines.
        if self.partial.strip():
            self._print("Agent: " + self.partial.strip(), "")
        self.partial = ""

    def _print(self, text: str, style: str) -> None:
        self.console.print(Text(clean(text), style=style))

    def _render(self) -> Group:
        elapsed = time.monotonic() - self.started
        self._spinner.text = Text(f"{self.doing} ({elapsed:.1f} s)", style="dim")
        parts: list[Text | Spinner] = []
        if self.partial:
            parts.append(Text("Agent: ", style="bold") + Text(self.partial))
        parts.append(self._spinner)
        return Group(*parts)


async def follow_turn(
    client: Client, conversation_id: str, turn_id: str, from_offset: int, view: LiveView
) -> None:
    """Show the events of turn `turn_id` until its answer, reconnecting where it left off."""
    stream = WorkflowStreamClient.create(client, conversation_id)
    offset = from_offset
    try:
        published = await stream.get_offset()
    except Exception:  # no worker to answer the query: nothing to catch up with yet
        published = 0
    if offset >= published:
        view.caught_up.set()
    while True:
        try:
            async for item in stream.subscribe(
                [EVENTS_TOPIC],
                offset,
                result_type=EVENT_TYPE,
                poll_cooldown=timedelta(milliseconds=50),
            ):
                offset = item.offset + 1
                if offset >= published:
                    view.caught_up.set()
                if item.data.turn_id != turn_id:
                    continue
                view.apply(item.data)
                if isinstance(item.data, TurnAnswered):
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


async def wait_briefly(awaitable: Awaitable[object], seconds: float = CATCH_UP_SECONDS) -> None:
    """Await `awaitable` for at most `seconds`: what it waits for is a courtesy, not a must."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(awaitable, seconds)

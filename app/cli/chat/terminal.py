"""The chat's screen: the one object that reads the user's lines and draws the transcript.

On a terminal the chat reads lines with `prompt_toolkit` (line editing, Up/Down history kept in
a file across sessions, or in memory only when the conversation is encrypted, no 4,095-character
line limit) and shows the turn in flight live with `rich` (`LiveView` says what to draw); with
piped input or output it prints plain `You:` / `Agent:` lines and nothing else on stdout, so
scripts can read it. Errors and hints always go to stderr, one line each. While a turn runs, other
tasks hand it lines through the turn's queue (`Terminal.notice`), so nothing draws over a prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from prompt_toolkit import PromptSession
from prompt_toolkit.application import run_in_terminal
from prompt_toolkit.history import FileHistory, InMemoryHistory
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.table import Table
from temporalio.runtime import Runtime, TelemetryConfig

from app.agent.models import Message
from app.agent.stream.events import AgentEvent
from app.cli.chat.live import LiveView, clean
from app.core.connection import is_local, one_line, split_address

T = TypeVar("T")

HISTORY_LINE_LIMIT = 120


def web_ui_for(address: str) -> str | None:
    """The dev server's Web UI for a local address: the gRPC port plus 1000, as it defaults to."""
    host, port = split_address(address)
    if port is None or not is_local(address):
        return None
    return f"http://localhost:{port + 1000}"


def workflow_link(web_ui: str | None, namespace: str, workflow_id: str) -> str | None:
    """The Web UI page of one workflow, or None when there is no UI to link to."""
    if web_ui is None:
        return None
    return f"{web_ui.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}"


def quiet_sdk_logs() -> None:
    """Keep the SDK's native log lines (retry warnings) off the chat's stdout.

    The chat turns every failure into its own one-line message; the SDK's default runtime
    would also print its retry warnings to stdout, with colour codes, into the transcript.
    """
    quiet = Runtime(telemetry=TelemetryConfig(logging=None))
    Runtime.set_default(quiet, error_if_already_set=False)


async def in_daemon_thread(function: Callable[[], T]) -> T:
    """`function()` on a daemon thread.

    Unlike `asyncio.to_thread`, a daemon thread never delays the exit: a Ctrl-C while the thread
    is blocked reading a terminal would otherwise wait for the next Enter.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, error = function(), None
        except BaseException as err:  # handed to the awaiting task
            result, error = None, err
        try:
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass

    threading.Thread(target=work, daemon=True).start()
    return await future


def indent_answer(prefix: str, text: str) -> str:
    """`prefix` and `text`, continuation lines aligned under the first."""
    return prefix + text.replace("\n", "\n" + " " * len(prefix))


def format_history(messages: list[Message], earlier_messages: int) -> list[str]:
    """The conversation as lines: user and agent messages, tool calls and results indented."""
    lines = []
    if earlier_messages:
        lines.append(
            f"({earlier_messages:,} earlier messages are not shown: they are in the event "
            "histories of earlier runs of this workflow)"
        )
    for message in messages:
        if message.role == "user":
            lines.extend(indent_answer("You: ", message.content or "").splitlines())
        elif message.role == "tool":
            result = one_line(message.content or "", HISTORY_LINE_LIMIT)
            lines.append(f"    <- {message.name}: {result}")
        else:
            for call in message.tool_calls:
                lines.append("    -> " + one_line(f"{call.name}({call.arguments})", 110))
            if message.content:
                lines.extend(indent_answer("Agent: ", message.content).splitlines())
    if not messages:
        lines.append("(no messages yet)")
    return lines


def history_file() -> Path:
    """Where the typed lines are kept: the demo's state folder, or the user's state folder."""
    if os.environ.get("DEMO_STATE_DIR"):
        folder = Path(os.environ["DEMO_STATE_DIR"])
    else:
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        folder = Path(base) / "durable-agent"
    return folder / "chat-history"


class Terminal:
    """The chat's screen: lines in, transcript on stdout, errors and hints on stderr.

    It is the only object that draws. It owns the `You:` prompt, the y/N question's prompt and
    the live view of the turn in flight, and keeps them apart: the live view is hidden while a
    question is asked and is never started again once its turn has ended, and a line printed
    while a prompt is open goes above it (prompt_toolkit redraws the prompt under it).
    """

    def __init__(self, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        # A person is typing: show a prompt, and let the terminal echo what they type.
        self.interactive = _isatty(stdin) and _isatty(stdout)
        # Only a real terminal gets the live view (ANSI); pipes and files get plain text.
        self.live = self.interactive and os.environ.get("TERM") != "dumb"
        self.console = Console(file=stdout, force_terminal=self.live, highlight=False)
        # False with encryption: typed lines stay in memory instead of a plain-text file.
        self.keep_history = True
        # The turn in flight (its model) and the rich display that shows it.
        self.turn: LiveView | None = None
        self._display: Live | None = None
        self._prompt: PromptSession[str] | None = None
        self._question: PromptSession[str] | None = None
        # Where notices from other tasks go while a turn runs (the turn's one queue).
        self.inbox: asyncio.Queue[Any] | None = None
        # Piped input is read one line at a time: a read nobody waits for any more (the caller
        # was cancelled) hands its line to the next one.
        self._reading: asyncio.Future[str] | None = None

    @classmethod
    def from_stdio(cls) -> Terminal:
        """The process's own stdin, stdout and stderr, never failing on unencodable text."""
        for stream in (sys.stdin, sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="replace")  # type: ignore[union-attr]
        return cls(sys.stdin, sys.stdout, sys.stderr)

    # --- lines ---------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """A line of the transcript (above the live view, or above an open prompt)."""
        # Answers, tool lines, history and usage quote the model and the tools: clean them
        # here, piped or not (a pipe often ends on a terminal, through `tee` or `less -R`).
        text = clean(text)
        if self._prompt_open():
            run_in_terminal(lambda: print(text, file=self.stdout, flush=True))
            return
        with self._display_paused():
            print(text, file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        """A line of the transcript that matters less (each turn's usage): dim on a terminal."""
        if not self.live:
            self.say(text)
            return
        with self._display_paused():
            self.console.print(clean(text), style="dim", markup=False, highlight=False)

    def error(self, text: str) -> None:
        """A one-line problem report."""
        text = clean(text)  # it may quote a tool's or the model's failure message
        if self._prompt_open():
            # Printed while the user types (the demo's notices), it would land in the input
            # line: prompt_toolkit prints it above and redraws the prompt with what was typed.
            run_in_terminal(lambda: print(text, file=self.stderr, flush=True))
            return
        with self._display_paused():
            self.stdout.flush()
            print(text, file=self.stderr, flush=True)

    def notice(self, text: str) -> None:
        """A line from another task (the demo's supervisor): through the turn's queue if one
        runs, so it is drawn between the turn's own lines, never inside them."""
        if self.inbox is not None:
            self.inbox.put_nowait(Notice(text))
        else:
            self.error(text)

    # --- the turn in flight ----------------------------------------------------------------

    def begin_turn(self) -> None:
        """Start showing a turn: its events, a spinner saying what the agent does."""
        self.end_turn(None)
        if not self.live:
            return
        self.turn = LiveView(self.console)
        self._display = Live(
            get_renderable=self.turn.render,
            console=self.console,
            transient=True,
            refresh_per_second=10,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
        )
        self._display.start()

    def show(self, event: AgentEvent) -> None:
        """One event of the turn in flight (a tool line, text, what the agent does)."""
        if self.turn is None:
            return
        for line in self.turn.apply(event):
            with self._display_paused():
                self.console.print(line)

    def end_turn(self, answer: str | None) -> None:
        """Stop showing the turn (nothing of the live view stays), then print `answer`."""
        if self._display is not None:
            self._display.stop()
            self._display = None
        self.turn = None
        if answer is None:
            return
        if self.live:
            self.console.print(answer_grid(answer))
        else:
            self.say(indent_answer("Agent: ", answer))

    # --- reading -----------------------------------------------------------------------------

    async def read_line(self, prompt: str) -> str | None:
        """The next line the user typed, without its newline; None at end of input.

        Cancelling the caller of a piped read leaves the read going (a thread blocked on stdin
        cannot be stopped): the line goes to the next caller, so nothing is lost or read twice.
        """
        if self.interactive:
            if self._prompt is None:
                self._prompt = PromptSession(history=_history(self.keep_history))
            return await _prompt_line(self._prompt, prompt)
        if self._reading is None:
            self._reading = asyncio.ensure_future(in_daemon_thread(self.stdin.readline))
        reading = self._reading
        line = await asyncio.shield(reading)
        if self._reading is reading:
            self._reading = None
        return line.rstrip("\r\n") if line else None

    def ask(self, prompt: str) -> asyncio.Task[str | None]:
        """Start reading the answer to a question; the live view steps aside meanwhile."""
        if not self.interactive:
            return asyncio.ensure_future(self.read_line(prompt))
        if self._display is not None:
            self._display.stop()
        if self._question is None:
            # Its own session: y and n are not messages to recall with the Up arrow.
            self._question = PromptSession(history=InMemoryHistory())
        self._question.app.erase_when_done = False
        return asyncio.ensure_future(_prompt_line(self._question, prompt))

    async def withdraw(self, reading: asyncio.Task[str | None]) -> None:
        """Stop a question's read (it was settled elsewhere): its prompt line is erased."""
        if not reading.done():
            app = self._question.app if self._question is not None else None
            if self.interactive and app is not None and app.is_running:
                app.erase_when_done = True
                app.exit(result="")
                await asyncio.gather(reading, return_exceptions=True)
            else:
                reading.cancel()  # a piped read goes on and hands its line to the next one
                await asyncio.gather(reading, return_exceptions=True)
        self.resume_display()

    def resume_display(self) -> None:
        """Show the live view again after a question, if its turn is still in flight."""
        if self._display is not None and not self._display.is_started:
            self._display.start()

    def _prompt_open(self) -> bool:
        return any(
            session is not None and session.app.is_running
            for session in (self._prompt, self._question)
        )

    @contextlib.contextmanager
    def _display_paused(self) -> Iterator[None]:
        # Never across an await: the display is started again only if it was running.
        running = self._display is not None and self._display.is_started
        if running:
            assert self._display is not None
            self._display.stop()
        try:
            yield
        finally:
            if running and self._display is not None:
                self._display.start()


@dataclass(frozen=True)
class Notice:
    """A line from another task for the screen, drawn by the turn's loop."""

    text: str


def answer_grid(text: str) -> Table:
    """The finished answer as Markdown, beside a bold `Agent:`."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("Agent:", Markdown(clean(text)))
    return grid


async def _prompt_line(session: PromptSession[str], prompt: str) -> str | None:
    try:
        # Ctrl-C at the prompt is a key (below). Left to prompt_toolkit, SIGINT handling
        # removes the chat's own handler when the prompt ends: Ctrl-C then did nothing.
        return await session.prompt_async(prompt, handle_sigint=False)
    except EOFError:  # Ctrl-D
        return None
    except KeyboardInterrupt:
        # The prompt reads Ctrl-C as a key; leave exactly as a Ctrl-C between turns does.
        signal.raise_signal(signal.SIGINT)
        await asyncio.Event().wait()  # cancelled by the SIGINT handler
        return None


def _history(keep: bool) -> FileHistory | InMemoryHistory:
    if not keep:  # with encryption: typed lines must not sit in a plain-text file
        return InMemoryHistory()
    path = history_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:  # a read-only home: history for this session only
        return InMemoryHistory()
    return FileHistory(str(path))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False

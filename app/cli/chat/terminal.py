"""The user's side of the chat: lines in, the transcript out, and how things are rendered.

On a terminal the chat reads lines with `prompt_toolkit` (line editing, Up/Down history kept in
a file across sessions, no 4,095-character line limit) and shows turns live with `rich`; with
piped input or output it prints plain `You:` / `Agent:` lines and nothing else on stdout, so
scripts can read it. Errors and hints always go to stderr, one line each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TextIO, TypeVar

from prompt_toolkit import PromptSession
from prompt_toolkit.application import run_in_terminal
from prompt_toolkit.history import FileHistory, InMemoryHistory
from rich.console import Console
from temporalio.runtime import Runtime, TelemetryConfig

from app.agent.models import Message
from app.core.connection import is_local, one_line, split_address

T = TypeVar("T")

HISTORY_LINE_LIMIT = 120
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


def clean(text: str) -> str:
    """`text` without terminal control sequences, safe to print on a terminal or into a pipe."""
    return _CONTROL.sub("", text)


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


class Pausable(Protocol):
    """A live display that must step aside while a line is printed under it."""

    def paused(self) -> contextlib.AbstractContextManager[None]: ...


class Terminal:
    """The user's side of the chat: lines in, transcript on stdout, errors and hints on stderr."""

    def __init__(self, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        # A person is typing: show a prompt, and let the terminal echo what they type.
        self.interactive = _isatty(stdin) and _isatty(stdout)
        # Only a real terminal gets the live view (ANSI); pipes and files get plain text.
        self.live = self.interactive and os.environ.get("TERM") != "dumb"
        self.console = Console(file=stdout, force_terminal=self.live, highlight=False)
        # The live view of the turn in flight, if any: errors are printed above it.
        self.live_view: Pausable | None = None
        self._prompt: PromptSession[str] | None = None
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

    def say(self, text: str) -> None:
        """A line of the transcript (above the live view, if one is running)."""
        # Answers, tool lines, history and usage quote the model and the tools: clean them
        # here, piped or not (a pipe often ends on a terminal, through `tee` or `less -R`).
        with self._above_live_view():
            print(clean(text), file=self.stdout, flush=True)

    def note(self, text: str) -> None:
        """A line of the transcript that matters less (each turn's usage): dim on a terminal."""
        if not self.live:
            self.say(text)
            return
        with self._above_live_view():
            self.console.print(clean(text), style="dim", markup=False, highlight=False)

    def error(self, text: str) -> None:
        """A one-line problem report."""
        text = clean(text)  # it may quote a tool's or the model's failure message
        if self._prompt is not None and self._prompt.app.is_running:
            # Printed while the user types (the demo's notices), it would land in the input
            # line: prompt_toolkit prints it above and redraws the prompt with what was typed.
            run_in_terminal(lambda: print(text, file=self.stderr, flush=True))
            return
        with self._above_live_view():
            self.stdout.flush()
            print(text, file=self.stderr, flush=True)

    async def read_line(self, prompt: str) -> str | None:
        """The next line the user typed, without its newline; None at end of input.

        Cancelling the caller of a piped read leaves the read going (a thread blocked on stdin
        cannot be stopped): the line goes to the next caller, so nothing is lost or read twice.
        """
        if self.interactive:
            with self._above_live_view():
                return await self._prompt_line(prompt)
        if self._reading is None:
            self._reading = asyncio.ensure_future(in_daemon_thread(self.stdin.readline))
        reading = self._reading
        line = await asyncio.shield(reading)
        if self._reading is reading:
            self._reading = None
        return line.rstrip("\r\n") if line else None

    async def _prompt_line(self, prompt: str) -> str | None:
        if self._prompt is None:
            self._prompt = PromptSession(history=_history())
        try:
            # Ctrl-C at the prompt is a key (below). Left to prompt_toolkit, SIGINT handling
            # removes the chat's own handler when the prompt ends: Ctrl-C then did nothing.
            return await self._prompt.prompt_async(prompt, handle_sigint=False)
        except EOFError:  # Ctrl-D
            return None
        except KeyboardInterrupt:
            # The prompt reads Ctrl-C as a key; leave exactly as a Ctrl-C between turns does.
            signal.raise_signal(signal.SIGINT)
            await asyncio.Event().wait()  # cancelled by the SIGINT handler
            return None

    @contextlib.contextmanager
    def _above_live_view(self) -> Iterator[None]:
        if self.live_view is None:
            yield
            return
        with self.live_view.paused():
            yield


def _history() -> FileHistory | InMemoryHistory:
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

"""The user's side of the chat: lines in, the transcript out, and how things are rendered.

On a terminal the chat shows a prompt, a progress line redrawn in place and dim notes (each
turn's usage); with piped input or output it prints plain `You:` / `Agent:` lines and nothing
else on stdout, so scripts can read it.
Errors and hints always go to stderr, one line each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

from temporalio.runtime import Runtime, TelemetryConfig

from app.agent.models import AgentStatus, Message
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


def status_text(status: AgentStatus) -> str:
    """What the workflow says it is doing, as the progress line shows it."""
    if status.state == "idle":
        text = "waiting for the workflow"
    else:
        text = status.detail or status.state.replace("_", " ")
    if status.queued_messages:
        text += f" ({status.queued_messages} more queued)"
    return text


class Terminal:
    """The user's side of the chat: lines in, transcript on stdout, errors and hints on stderr."""

    def __init__(self, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        # A person is typing: show a prompt, and let the terminal echo what they type.
        self.interactive = _isatty(stdin) and _isatty(stdout)
        # Only a real terminal gets a redrawn progress line (ANSI); pipes and files get plain text.
        self.live = self.interactive and os.environ.get("TERM") != "dumb"
        encoding = (getattr(stdout, "encoding", None) or "").lower()
        self.frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" if "utf" in encoding else "|/-\\"
        self._status_shown = False
        # A prompt waiting for its answer: the progress line must not overwrite it.
        self._prompt_open = False
        # One read at a time: a read nobody waits for any more hands its line to the next one.
        self._reading: asyncio.Future[str] | None = None

    @classmethod
    def from_stdio(cls) -> Terminal:
        """The process's own stdin, stdout and stderr, never failing on unencodable text."""
        for stream in (sys.stdin, sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="replace")  # type: ignore[union-attr]
        return cls(sys.stdin, sys.stdout, sys.stderr)

    def say(self, text: str) -> None:
        """A line of the transcript."""
        self.clear_status()
        self._leave_prompt()
        print(text, file=self.stdout, flush=True)

    def error(self, text: str) -> None:
        """A one-line problem report."""
        self.clear_status()
        self._leave_prompt()
        self.stdout.flush()
        print(text, file=self.stderr, flush=True)

    def note(self, text: str) -> None:
        """A line of the transcript that matters less: dim on a live terminal."""
        self.say(f"\x1b[2m{text}\x1b[0m" if self.live else text)

    def status(self, text: str) -> None:
        """Redraw the progress line (terminals only, and not over an open prompt)."""
        if not self.live or self._prompt_open:
            return
        width = shutil.get_terminal_size().columns - 1
        self.stdout.write("\r\x1b[K" + text[:width])
        self.stdout.flush()
        self._status_shown = True

    def clear_status(self) -> None:
        """Erase the progress line, if one is shown."""
        if self._status_shown:
            self.stdout.write("\r\x1b[K")
            self.stdout.flush()
            self._status_shown = False

    async def read_line(self, prompt: str) -> str | None:
        """The next line the user typed, without its newline; None at end of input.

        Cancelling the caller leaves the read going (a thread blocked on stdin cannot be
        stopped): the line goes to the next caller, so nothing typed is lost or read twice.
        """
        if self.interactive:
            self.clear_status()
            self._leave_prompt()
            self.stdout.write(prompt)
            self.stdout.flush()
            self._prompt_open = True
        if self._reading is None:
            self._reading = asyncio.ensure_future(in_daemon_thread(self.stdin.readline))
        reading = self._reading
        line = await asyncio.shield(reading)
        if self._reading is reading:
            self._reading = None
        # The terminal echoed the Enter: the cursor is on a fresh line.
        self._prompt_open = False
        return line.rstrip("\r\n") if line else None

    def _leave_prompt(self) -> None:
        """Move below a prompt nobody answered, before printing anything else."""
        if self._prompt_open:
            self.stdout.write("\n")
            self._prompt_open = False


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False

"""What `uv run demo` prints on stderr while it starts: one line per step, with its time."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TextIO

from app.core.connection import one_line


def shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is under it, for shorter messages."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def server_error(log: Path) -> str:
    """The dev server's own one-line explanation of why it stopped."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("Error:")]
    last = errors[-1] if errors else next((line for line in reversed(lines) if line), "no log")
    return one_line(last.removeprefix("Error: "), 240)


class DemoError(Exception):
    """Why the demo cannot run, in one line (a worker's log tail may follow)."""


class Progress:
    """Concise start-up progress on stderr: `Doing x... ready in 0.4 s`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._open_line = False
        self._started = 0.0

    def begin(self, text: str) -> None:
        """Start a step: `text...` with the line left open for its outcome."""
        self.end_line()
        self.stream.write(text + "... ")
        self.stream.flush()
        self._open_line = True
        self._started = time.monotonic()

    def done(self, text: str = "ready") -> None:
        """Finish the open step with how long it took."""
        self.stream.write(f"{text} in {time.monotonic() - self._started:.1f} s\n")
        self.stream.flush()
        self._open_line = False

    def line(self, text: str) -> None:
        """A line of its own."""
        self.end_line()
        print(text, file=self.stream, flush=True)

    def end_line(self) -> None:
        """Close a step's line left open, before anything else is printed."""
        if self._open_line:
            self.stream.write("\n")
            self._open_line = False

"""Helpers for tests that run the real programs as processes: ports, environments, runs, /proc.

The chat client, the demo and the workers are tested the way people run them, as child processes
with piped input or on a pseudo-terminal, so these helpers start them, feed them, read their output
as it comes, and check afterwards that nothing they started is still running.
"""

from __future__ import annotations

import asyncio
import os
import pty
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pyte
from temporalio.client import Client

from app.core.names import ORCHESTRATOR, PROJECT_ROOT
from app.core.processes import Child, is_polling

ANSI_ESCAPE = "\x1b"


def program_env(**overrides: str | None) -> dict[str, str]:
    """The test's environment for a child program: offline model, no stray Temporal settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TEMPORAL_", "DEMO_", "OFFLINE_MODEL_"))
        # pytest-xdist's workers set COLUMNS=80 and LINES=24, which rich prefers to the size of
        # a child's own terminal: a 60-column test terminal was then drawn as 80 columns wide.
        and name not in ("COLUMNS", "LINES")
    }
    env.update(LLM_MODEL="offline/agent", PYTHONUNBUFFERED="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@dataclass
class Finished:
    """What a program printed, and how it ended."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def lines(self, prefix: str) -> list[str]:
        """The stdout lines that start with `prefix`."""
        return [line for line in self.stdout.splitlines() if line.startswith(prefix)]


async def run_program(
    args: list[str], *, stdin: str = "", env: dict[str, str], timeout: float = 90
) -> Finished:
    """Run `python <args>` in the project folder with `stdin` piped in; wait for it to end."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=PROJECT_ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(
            f"{args} did not finish in {timeout} s\nstdout:\n{out.decode()}\nstderr:\n"
            f"{err.decode()}"
        ) from None
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode(), time.monotonic() - started)


class Running:
    """A program still running, with its output collected as it arrives."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stdout = ""
        self.stderr = ""
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            asyncio.create_task(self._collect(process.stdout, "stdout")),
            asyncio.create_task(self._collect(process.stderr, "stderr")),
        ]

    @classmethod
    async def start(cls, args: list[str], *, env: dict[str, str]) -> Running:
        """Start `python <args>` in the project folder with pipes on all three streams."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _collect(self, stream: asyncio.StreamReader, name: str) -> None:
        while chunk := await stream.read(4096):
            setattr(self, name, getattr(self, name) + chunk.decode(errors="replace"))

    def send(self, text: str) -> None:
        """Write `text` to its stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())

    async def wait_for_output(self, needle: str, timeout: float = 30) -> None:
        """Wait until stdout or stderr contains `needle`."""
        await wait_until(
            lambda: needle in self.stdout or needle in self.stderr or self.exited,
            timeout,
            f"{needle!r} in the output",
            self.describe,
        )
        assert needle in self.stdout or needle in self.stderr, self.describe()

    @property
    def exited(self) -> bool:
        """Whether it has exited."""
        return self.process.returncode is not None

    async def wait(self, timeout: float = 30) -> Finished:
        """Wait for it to exit, and return what it printed."""
        started = time.monotonic()
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"still running after {timeout} s\n{self.describe()}") from None
        await asyncio.gather(*self._readers)
        assert self.process.returncode is not None
        return Finished(
            self.process.returncode, self.stdout, self.stderr, time.monotonic() - started
        )

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send it `sig` (SIGKILL by default) unless it has exited."""
        if not self.exited:
            self.process.send_signal(sig)

    def describe(self) -> str:
        """Its output so far, for assertion messages."""
        return f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"


async def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    details: Callable[[], str] = lambda: "",
) -> None:
    """Poll `condition` every 50 ms until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{details()}")
        await asyncio.sleep(0.05)


def is_running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def processes_mentioning(text: str) -> list[str]:
    """The live processes whose command line contains `text` (pid and command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and is_running(int(entry.name)):
            found.append(f"{entry.name}: {cmdline}")
    return found


async def start_orchestrator_worker(env: dict[str, str], log: Path) -> Child:
    """`orchestrator_worker.py` as a child process (the Python process itself), logging to `log`."""
    command = [sys.executable, ORCHESTRATOR.program]
    # No wrapper and no session of its own: the pid is the worker, so kill -9 kills the worker.
    return await Child.start(
        ORCHESTRATOR.name, command, log, env, own_session=False, die_with_parent=False
    )


async def wait_until_polling(client: Client, worker: Child, timeout: float = 60) -> None:
    """Wait until the server sees the orchestrator worker process polling its queue."""
    deadline = time.monotonic() + timeout
    while not await is_polling(client, ORCHESTRATOR, worker.pid):
        if worker.exit_code is not None or time.monotonic() > deadline:
            raise AssertionError(f"the orchestrator worker is not polling:\n{worker.log_tail(40)}")
        await asyncio.sleep(0.1)


class PseudoTerminal:
    """`python client.py` on a pseudo-terminal (stdlib `pty`), and everything it has drawn."""

    def __init__(self, process: asyncio.subprocess.Process, controller: int) -> None:
        self.process = process
        self.controller = controller
        self.screen = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @classmethod
    async def start(cls, env: dict[str, str], state: Path) -> PseudoTerminal:
        """The chat client on a new terminal, its input history kept in `state`."""
        controller, terminal = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "client.py",
            cwd=PROJECT_ROOT,
            # The test's terminal never answers prompt_toolkit's cursor position requests.
            env=env | {"TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", "XDG_STATE_HOME": str(state)},
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        return cls(process, controller)

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.controller, 4096)
            except OSError:  # the client has exited and closed the terminal
                return
            if not chunk:
                return
            self.screen.extend(chunk)

    def type(self, text: str) -> None:
        """Type `text` (a trailing newline is Enter)."""
        os.write(self.controller, text.encode())

    def shown(self) -> str:
        """What a person reads: without the control sequences prompt_toolkit and rich draw with."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.screen.decode(errors="replace"))

    def seen(self, text: str, times: int = 1) -> bool:
        return self.shown().count(text) >= times

    async def wait_to_see(self, text: str, times: int = 1, timeout: float = 30) -> None:
        await wait_until(lambda: self.seen(text, times), timeout, repr(text), self.shown)

    async def close(self) -> None:
        """Kill the client if it still runs; stop reading its terminal."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        await asyncio.to_thread(self._reader.join, 5)
        os.close(self.controller)


class DrawnTerminal:
    """A program on a pexpect terminal of `rows` x `cols`, drawn on a pyte screen that keeps its
    scrollback: what a person sees, and what they would find by scrolling up."""

    def __init__(self, child: pexpect.spawn, rows: int, cols: int) -> None:
        self.child = child
        self.screen = pyte.HistoryScreen(cols, rows, history=5000)
        self._stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()

    @classmethod
    def spawn(
        cls, args: list[str], env: dict[str, str], rows: int = 24, cols: int = 100
    ) -> DrawnTerminal:
        """`python <args>` in the project folder on a new terminal."""
        # The test's terminal never answers prompt_toolkit's cursor position requests.
        env = env | {"TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1"}
        child = pexpect.spawn(
            sys.executable, args, cwd=str(PROJECT_ROOT), env=env, dimensions=(rows, cols)
        )
        return cls(child, rows, cols)

    def pump(self) -> None:
        """Draw what the program has written since the last call."""
        while not self.child.closed:
            try:
                chunk = self.child.read_nonblocking(65536, timeout=0)
            except (pexpect.TIMEOUT, pexpect.EOF):
                return
            self.raw.extend(chunk)
            self._stream.feed(chunk)

    def lines(self) -> list[str]:
        """Every line, the scrollback first, without trailing blanks."""
        self.pump()
        columns = range(self.screen.columns)
        scrolled = ["".join(line[x].data for x in columns) for line in self.screen.history.top]
        return [line.rstrip() for line in scrolled + list(self.screen.display)]

    def text(self) -> str:
        return "\n".join(self.lines())

    def type(self, text: str) -> None:
        """Type `text`; a trailing "\r" is Enter."""
        self.child.send(text)

    async def wait_to_see(self, text: str, times: int = 1, timeout: float = 30) -> None:
        await wait_until(lambda: self.text().count(text) >= times, timeout, repr(text), self.text)

    async def wait_to_exit(self, timeout: float = 20) -> int:
        """Wait for the program to end; its exit status."""
        await wait_until(lambda: not self.child.isalive(), timeout, "the exit", self.text)
        self.pump()
        self.child.close()
        return self.child.exitstatus if self.child.exitstatus is not None else -1

    def close(self) -> None:
        if self.child.isalive():
            self.child.close(force=True)

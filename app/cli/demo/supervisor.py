"""`uv run demo` watching what it started while the chat runs: a worker that dies is restarted.

A durable agent's demo should show a conversation outliving a crash. When one of the demo's
workers exits (a `kill -9`, a crash), the demo says so in one line (which worker, its exit status,
its log) and starts it again; the work it had in hand waits in Temporal and is picked up by the
new process, so messages sent meanwhile are answered once it polls. A worker that keeps dying
(`RESTART_LIMIT` times within `RESTART_WINDOW_SECONDS`) is left stopped, with a line saying so:
restarting it again would only hide what its log says. The dev server the demo started is
watched too but not restarted: the chat explains what its loss means for the conversation.
Until a worker first polls it is still starting, and `wait_until_ready` watches it instead: a
worker that dies then fails the demo's start, with the end of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable

from temporalio.client import Client
from temporalio.service import RPCError

from app.agent.llm.client import READY_TEXT
from app.cli.demo.progress import DemoError, shown_path
from app.core.names import ORCHESTRATOR, ORCHESTRATOR_LLM, Deployment
from app.core.processes import Child, is_polling

RESTART_LIMIT = 3
RESTART_WINDOW_SECONDS = 60.0
CHECK_SECONDS = 0.5


def exit_status(code: int) -> str:
    """A process's exit code as a person reads it: `exit code 3`, `killed by SIGKILL`."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


class Supervisor:
    """Restarts the demo's workers when they die; reports the dev server's death once."""

    def __init__(
        self,
        workers: list[Child],
        restart: Callable[[int], Awaitable[Child]],
        report: Callable[[str], None],
        server: Child | None = None,
    ) -> None:
        # The demo's own list: a restart replaces its entry, so stopping the demo stops the
        # new process.
        self.workers = workers
        self.restart = restart
        self.report = report
        self.server = server
        self._deaths: dict[str, deque[float]] = {}
        self._given_up: set[str] = set()
        self._server_reported = False
        # Workers that have not polled yet: `wait_until_ready` owns them until they do.
        self._starting = {child.pid for child in workers}
        self.all_started = asyncio.Event()

    def started(self, child: Child) -> None:
        """`child` polls: from now on, when it dies it is restarted."""
        self._starting.discard(child.pid)
        if not self._starting:
            self.all_started.set()

    async def watch(self) -> None:
        """Check every `CHECK_SECONDS` until cancelled."""
        while True:
            await asyncio.sleep(CHECK_SECONDS)
            await self.check()

    async def check(self) -> None:
        """Restart each worker that has exited, unless it keeps dying; report the server."""
        for index, child in enumerate(self.workers):
            if child.exit_code is None or child.name in self._given_up:
                continue
            if child.pid in self._starting:
                continue
            stopped = (
                f"demo: the {child.name} stopped ({exit_status(child.exit_code)}); its log: "
                f"{shown_path(child.log)}"
            )
            if self._keeps_dying(child.name):
                self._given_up.add(child.name)
                self.report(
                    f"{stopped}; it stopped {RESTART_LIMIT} times within "
                    f"{RESTART_WINDOW_SECONDS:g} s, so the demo no longer restarts it"
                )
                continue
            self.report(f"{stopped}; restarting it")
            self.workers[index] = await self.restart(index)
        if self.server is not None and self.server.exit_code is not None:
            if not self._server_reported:
                self._server_reported = True
                self.report(
                    f"demo: the Temporal dev server stopped ({exit_status(self.server.exit_code)}"
                    f"); its log: {shown_path(self.server.log)}"
                )

    def _keeps_dying(self, name: str) -> bool:
        """Count one more death of `name`; True when it is the limit's within the window."""
        now = time.monotonic()
        deaths = self._deaths.setdefault(name, deque())
        deaths.append(now)
        while now - deaths[0] > RESTART_WINDOW_SECONDS:
            deaths.popleft()
        return len(deaths) >= RESTART_LIMIT


async def wait_until_ready(
    client: Client,
    workers: dict[Deployment, Child],
    server: Child | None,
    polling: Callable[[Child], None],
    started: float,
    deadline: float,
) -> str:
    """Wait until the server sees each of `workers` polling (`polling` is told of each) and the
    orchestrator worker has loaded LiteLLM; returns the line that says so, with the model the
    worker named. `DemoError` if one exits first or does not poll by `deadline`, or if the dev
    server the demo started (`server`) stops."""
    waiting = dict(workers)
    while waiting:
        if server is not None and server.exit_code is not None:
            raise DemoError(
                f"the Temporal dev server stopped ({exit_status(server.exit_code)}) while the "
                f"workers started; its log: {shown_path(server.log)}"
            )
        for program, child in list(waiting.items()):
            if (code := child.exit_code) is not None:
                how = f"exited with code {code}" if code >= 0 else f"was {exit_status(code)}"
                raise DemoError(
                    f"the {program.name} {how} before polling "
                    f"{program.task_queue}; the end of {shown_path(child.log)}:\n"
                    f"{child.log_tail()}"
                )
            with contextlib.suppress(RPCError):  # the server's own hiccups: asked again
                if await is_polling(client, program, child.pid):
                    del waiting[program]
                    polling(child)
        if not waiting:
            break
        if time.monotonic() > deadline:
            program, child = next(iter(waiting.items()))
            raise DemoError(
                f"the {program.name} is not polling {program.task_queue} after "
                f"{deadline - started:g} s; the end of {shown_path(child.log)}:\n"
                f"{child.log_tail()}"
            )
        await asyncio.sleep(0.1)
    all_polling = time.monotonic() - started
    # It polls before it has loaded LiteLLM (seconds); a first message waits for that.
    orchestrator = workers.get(ORCHESTRATOR_LLM) or workers.get(ORCHESTRATOR)
    while orchestrator and orchestrator.exit_code is None and time.monotonic() < deadline:
        for line in orchestrator.log.read_text(errors="replace").splitlines():
            if READY_TEXT in line:
                model = line.split(READY_TEXT, 1)[1].strip()
                loaded = time.monotonic() - started
                return (
                    f"Workers: ready (polling after {all_polling:.1f} s, LiteLLM loaded after "
                    f"{loaded:.1f} s); model: {model}"
                )
        await asyncio.sleep(0.1)
    return f"Workers: polling after {all_polling:.1f} s"

"""`uv run demo` watching what it started while the chat runs: a worker that dies is restarted.

A durable agent's demo should show a conversation outliving a crash. When one of the demo's
workers exits (a `kill -9`, a crash), the demo says so in one line (which worker, its exit status,
its log) and starts it again; the work it had in hand waits in Temporal and is picked up by the
new process, so messages sent meanwhile are answered once it polls. A worker that keeps dying
(`RESTART_LIMIT` times within `RESTART_WINDOW_SECONDS`) is left stopped, with a line saying so:
restarting it again would only hide what its log says. The dev server the demo started is
watched too but not restarted: the chat explains what its loss means for the conversation.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable

from app.cli.progress import shown_path
from app.core.processes import Child

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

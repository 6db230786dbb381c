"""Child processes and readiness: starting and stopping programs, free ports, "is it polling?".

`uv run demo`, the benchmark and the tests all start the real programs as processes; they share
these helpers, so a program is started, watched and stopped the same way everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from app.core.names import PROJECT_ROOT, Deployment, NexusDeployment

# Run before the real program, in the child: ask Linux to SIGTERM it when its parent dies (even by
# SIGKILL), and give up if the parent is already gone. A preexec_fn would do the same from inside
# the fork, where calling into Python is unsafe while other threads run.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def port_is_listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port (a refusal answers at once)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class Child:
    """A process we started, logging to a file."""

    def __init__(
        self, name: str, process: asyncio.subprocess.Process, log: Path, own_session: bool
    ) -> None:
        self.name = name
        self.process = process
        self.log = log
        self.own_session = own_session

    @classmethod
    async def start(
        cls,
        name: str,
        command: list[str],
        log: Path,
        env: dict[str, str],
        *,
        own_session: bool = True,
        die_with_parent: bool = True,
        append: bool = False,
    ) -> Child:
        """Start `command` in the project folder with its output in `log` (added to, if `append`).

        In its own session a Ctrl-C in the terminal reaches only us, and we stop the children in
        order (workers before the server they talk to).
        """
        if die_with_parent and sys.platform.startswith("linux"):
            command = [sys.executable, "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *command]
        with log.open("ab" if append else "wb") as output:
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=own_session,
            )
        return cls(name, process, log, own_session)

    @property
    def pid(self) -> int:
        """Its process id (in its own session, also its process group id)."""
        return self.process.pid

    @property
    def exit_code(self) -> int | None:
        """Its exit code, or None while it runs."""
        return self.process.returncode

    def log_tail(self, lines: int = 12) -> str:
        """The last non-blank lines of its log, indented, for a report on stderr."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "    (no log)"
        tail = [line for line in text if line.strip()][-lines:]
        return "\n".join("    " + line[:300] for line in tail) or "    (empty log)"

    async def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; then clear out its process group."""
        if self.process.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await self.process.wait()
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.own_session:
                os.killpg(self.pid, sig)  # its children too
            elif self.process.returncode is None:
                os.kill(self.pid, sig)


async def is_polling(
    client: Client, deployment: Deployment, pid: int | None = None, timeout: float | None = None
) -> bool:
    """Whether the server sees a worker (the process `pid`, if given) polling `deployment`."""
    queue_type = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
    if isinstance(deployment, NexusDeployment):
        queue_type = TaskQueueType.TASK_QUEUE_TYPE_NEXUS
    elif deployment.activities_only:
        queue_type = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    request = DescribeTaskQueueRequest(
        namespace=deployment.namespace,
        task_queue=TaskQueue(name=deployment.task_queue),
        task_queue_type=queue_type,
    )
    response = await client.workflow_service.describe_task_queue(
        request, timeout=None if timeout is None else timedelta(seconds=timeout)
    )
    if pid is None:
        return bool(response.pollers)
    # The SDK's default identity is "<pid>@<host>": a worker of an earlier run does not count.
    return any(poller.identity.startswith(f"{pid}@") for poller in response.pollers)

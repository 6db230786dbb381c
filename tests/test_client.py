"""The chat client end to end: `client.py` as a real process against the dev server.

The orchestrator worker runs in this process (the offline model; no Nexus tools are needed), and
the client runs as people run it, with piped input or on a pseudo-terminal. The tests pin down the
transcript, the one-line failures (rejected messages, no server, no worker, an ended
conversation), resuming, the commands, and that only a terminal gets a live progress line.
"""

from __future__ import annotations

import asyncio
import io
import re
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import client as client_program
from app.agent.llm.client import choose_model, litellm_module
from app.agent.models import AgentConfig, AgentInput, Message
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.cli.chat import retries
from app.cli.chat import session as chat_session
from app.cli.chat.session import ChatSession
from app.cli.chat.terminal import Terminal, format_history
from app.core.names import ORCHESTRATOR
from app.core.processes import free_port
from tests.conftest import start_dev_server
from tests.stack_processes import (
    ANSI_ESCAPE,
    Finished,
    PseudoTerminal,
    Running,
    program_env,
    run_program,
    wait_until,
)


def orchestrator(client: Client) -> Worker:
    """The orchestrator worker as `orchestrator_worker.py` configures it, in this process."""
    return orchestrator_worker(client)


@pytest.fixture(scope="module")
async def served(dev_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """The dev server's client, with an orchestrator worker polling the real task queue."""
    # Imported here, not by the first activity on the worker's event loop.
    await asyncio.to_thread(litellm_module)
    async with orchestrator(dev_env.client):
        yield dev_env.client


@pytest.fixture(scope="module")
async def bare_env() -> AsyncIterator[WorkflowEnvironment]:
    """A second dev server with no worker at all."""
    env = await start_dev_server()
    yield env
    await env.shutdown()


def address(client: Client) -> str:
    return client.service_client.config.target_host


async def run_client(client: Client, stdin: str, *args: str) -> Finished:
    """`client.py` with `stdin` piped in, against `client`'s server."""
    env = program_env(TEMPORAL_ADDRESS=address(client))
    return await run_program(["client.py", *args], stdin=stdin, env=env, timeout=60)


def conversation_of(result: Finished) -> str:
    [line] = result.lines("Conversation: ")
    return line.split()[1]


def assert_plain(result: Finished) -> None:
    """No traceback, and no terminal control codes in piped output."""
    assert "Traceback" not in result.stderr, result.stderr
    assert ANSI_ESCAPE not in result.stdout + result.stderr


async def end(client: Client, conversation_id: str) -> None:
    handle = client.get_workflow_handle(conversation_id)
    await handle.signal(AgentWorkflow.end_conversation)
    await handle.result()


async def test_piped_chat_prints_the_transcript_the_history_and_how_to_resume(served: Client):
    result = await run_client(served, "Calculate 15 * 23\n\n   \n/history\nquit\n")

    assert result.returncode == 0, result.stderr
    assert_plain(result)
    assert result.stderr == ""
    conversation = conversation_of(result)
    ui_port = int(address(served).rsplit(":", 1)[1]) + 1000
    assert result.stdout.splitlines() == [
        f"Conversation: {conversation} (new)",
        f"Model: {choose_model().describe()}",
        f"Web UI: http://localhost:{ui_port}/namespaces/default/workflows/{conversation}",
        "You: Calculate 15 * 23",
        "Agent: 15 * 23 = 345",
        f"History of {conversation}:",
        "You: Calculate 15 * 23",
        '    -> calculator({"expression": "15 * 23"})',
        "    <- calculator: 345",
        "Agent: 15 * 23 = 345",
        f"Conversation {conversation} stays open: resume it with "
        f"`uv run client.py --conversation-id {conversation}`.",
    ]
    # Leaving the chat does not end the conversation.
    handle = served.get_workflow_handle(conversation)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await end(served, conversation)


async def test_a_resumed_conversation_keeps_its_history(served: Client):
    first = await run_client(served, "Calculate 15 * 23\n")
    conversation = conversation_of(first)

    again = await run_client(
        served, "/history\nCalculate 2 + 2\nexit\n", "--conversation-id", conversation
    )

    assert again.returncode == 0, again.stderr
    assert_plain(again)
    assert f"Conversation: {conversation} (resumed)" in again.stdout
    history = again.stdout.split(f"History of {conversation}:\n")[1]
    assert history.startswith("You: Calculate 15 * 23\n")
    assert again.lines("Agent: ") == ["Agent: 15 * 23 = 345", "Agent: 2 + 2 = 4"]
    await end(served, conversation)


async def test_a_rejected_message_is_one_error_line_and_the_chat_goes_on(served: Client):
    result = await run_client(served, "x" * 40_000 + "\n\nCalculate 2 * 3\nquit\n")

    assert result.returncode == 0
    assert_plain(result)
    assert result.stderr == "Error: the message has 40,000 characters; the limit is 32,000\n"
    assert result.lines("You: ")[0].endswith("... (40,000 characters)")
    assert result.lines("Agent: ") == ["Agent: 2 * 3 = 6"]
    await end(served, conversation_of(result))


async def test_an_empty_message_is_refused_by_the_workflow_in_one_line(served: Client):
    out, err = io.StringIO(), io.StringIO()
    session = ChatSession(
        served, Terminal(io.StringIO(), out, err), web_ui=None, resume_command="uv run client.py"
    )
    await session.start_new()

    await session.send("   ")

    assert err.getvalue() == "Error: the message is empty\n"
    assert "Agent:" not in out.getvalue()
    await end(served, session.conversation_id)


async def test_new_starts_another_conversation_and_end_ends_this_one(served: Client):
    result = await run_client(served, "Calculate 1 + 1\n/new\nCalculate 2 + 2\n/end\n")

    assert result.returncode == 0, result.stderr
    assert_plain(result)
    first, second = (line.split()[1] for line in result.lines("Conversation: "))
    assert f"Started {second}; {first} stays open." in result.stdout
    assert result.stdout.splitlines()[-1] == f"Conversation {second} ended after 1 turn."
    assert result.lines("Agent: ") == ["Agent: 1 + 1 = 2", "Agent: 2 + 2 = 4"]
    described = [await served.get_workflow_handle(id).describe() for id in (first, second)]
    assert [d.status for d in described] == [
        WorkflowExecutionStatus.RUNNING,
        WorkflowExecutionStatus.COMPLETED,
    ]
    await end(served, first)


async def test_resuming_an_ended_or_unknown_conversation_is_one_line_and_exit_1(served: Client):
    ended = f"conversation-{uuid.uuid4().hex[:8]}"
    await served.start_workflow(
        AgentWorkflow.run, AgentInput(), id=ended, task_queue=ORCHESTRATOR.task_queue
    )
    await end(served, ended)

    closed = await run_client(served, "hello\n", "--conversation-id", ended)
    unknown = await run_client(served, "hello\n", "--conversation-id", "conversation-nope")

    assert (closed.returncode, closed.stdout) == (1, "")
    assert closed.stderr == (
        f"conversation {ended} has ended (completed); start a new one with `uv run client.py`\n"
    )
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr == (
        f"there is no conversation conversation-nope in namespace default at {address(served)}\n"
    )


async def test_main_takes_an_injected_client(served: Client, capsys: pytest.CaptureFixture[str]):
    code = await client_program.main(["--conversation-id", "conversation-nope"], client=served)

    assert code == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("there is no conversation conversation-nope ")
    assert captured.err.count("\n") == 1


async def test_no_server_is_one_line_and_exit_1():
    port = free_port()
    result = await run_program(
        ["client.py"],
        stdin="hello\n",
        env=program_env(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"),
        timeout=30,
    )

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"cannot reach Temporal at 127.0.0.1:{port}: is the server running? Start it with "
        "`uv run temporal server start-dev`, or run everything with `uv run demo` "
        "(connection refused)\n"
    )


async def test_without_a_worker_the_user_is_told_and_ctrl_c_leaves_cleanly(
    bare_env: WorkflowEnvironment,
):
    env = program_env(TEMPORAL_ADDRESS=address(bare_env.client))
    running = await Running.start(["client.py"], env=env)
    running.send("Calculate 15 * 23\n")
    hint = (
        f"no orchestrator worker is polling {ORCHESTRATOR.task_queue}: start it with "
        "`uv run orchestrator_worker.py` (messages wait until one does)"
    )
    await running.wait_for_output(hint)
    await running.wait_for_output("You: Calculate 15 * 23")

    running.kill(signal.SIGINT)
    result = await running.wait(10)

    assert result.returncode == 0
    assert_plain(result)
    assert result.stderr == hint + "\n"
    conversation = conversation_of(result)
    assert result.stdout.splitlines()[-2:] == [
        "Your last message was not taken up by a worker yet: check /history when you come "
        "back, and send it again if it is missing.",
        f"Conversation {conversation} stays open: resume it with "
        f"`uv run client.py --conversation-id {conversation}`.",
    ]


async def test_a_message_waits_for_a_late_worker_and_the_wait_is_explained(
    bare_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(chat_session, "ACCEPT_HINT_SECONDS", 0.5)
    client = bare_env.client
    out, err = io.StringIO(), io.StringIO()
    session = ChatSession(
        client, Terminal(io.StringIO(), out, err), web_ui=None, resume_command="uv run client.py"
    )
    await session.start_new()

    sending = asyncio.create_task(session.send("Calculate 15 * 23"))
    await wait_until(lambda: "your message is waiting" in err.getvalue(), 10, "the hint")
    assert not sending.done()
    async with orchestrator(client):
        await asyncio.wait_for(sending, 30)
        await end(client, session.conversation_id)

    assert out.getvalue().splitlines()[-1] == "Agent: 15 * 23 = 345"
    assert err.getvalue() == (
        f"your message is waiting: no orchestrator worker is polling {ORCHESTRATOR.task_queue} "
        "(start it with `uv run orchestrator_worker.py`)\n"
    )


@pytest.mark.timeout(60)
async def test_a_terminal_shows_what_the_workflow_is_doing(
    served: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    # Each planning call of the in-process worker takes 0.6 s, so there is progress to see.
    monkeypatch.setenv("OFFLINE_MODEL_LATENCY_MS", "600")
    client = await PseudoTerminal.start(program_env(TEMPORAL_ADDRESS=address(served)), tmp_path)
    try:
        await client.wait_to_see("You:", timeout=20)
        client.type("Calculate 15 * 23\n")
        await client.wait_to_see("Agent: ", timeout=20)
        client.type("quit\n")
        assert await asyncio.wait_for(client.process.wait(), 10) == 0
    finally:
        await client.close()

    text = client.screen.decode()
    assert "\x1b[2K" in text  # the live view is redrawn in place ...
    assert "thinking (" in text  # ... with what the stream says the agent does
    assert "-> calculator(" in text  # ... and a line per tool call
    assert "Agent: 15 * 23 = 345" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    await end(served, text.split("Conversation: ")[1].split()[0])


async def test_messages_follow_the_conversation_across_continue_as_new(served: Client):
    conversation = f"conversation-{uuid.uuid4().hex[:8]}"
    # A new run after every turn, so messages keep meeting runs that are closing.
    first_run = await served.start_workflow(
        AgentWorkflow.run,
        AgentInput(config=AgentConfig(max_turns_per_run=1)),
        id=conversation,
        task_queue=ORCHESTRATOR.task_queue,
    )
    sessions = []
    for _ in range(3):
        out, err = io.StringIO(), io.StringIO()
        session = ChatSession(
            served, Terminal(io.StringIO(), out, err), web_ui=None, resume_command="client.py"
        )
        await session.attach(conversation)
        sessions.append((session, out, err))

    await sessions[0][0].send("Calculate 1 + 1")
    await asyncio.gather(
        *(session.send(f"Calculate {n} * 10") for n, (session, _, _) in enumerate(sessions))
    )
    await sessions[0][0].show_history()

    assert [err.getvalue() for _, _, err in sessions] == ["", "", ""]
    transcripts = [out.getvalue() for _, out, _ in sessions]
    assert [line for line in transcripts[0].splitlines() if line.startswith("Agent:")][:2] == [
        "Agent: 1 + 1 = 2",
        "Agent: 0 * 10 = 0",
    ]
    assert "Agent: 1 * 10 = 10" in transcripts[1]
    assert "Agent: 2 * 10 = 20" in transcripts[2]
    history = transcripts[0].split(f"History of {conversation}:\n")[1]
    assert history.count("You: ") == 4
    # Each answered turn started a new run of the same conversation.
    latest = await served.get_workflow_handle(conversation).describe()
    assert latest.run_id != first_run.run_id
    await end(served, conversation)


def test_history_says_how_many_messages_are_in_earlier_runs():
    lines = format_history([Message.user("hi"), Message.assistant("hello\nthere")], 1234)

    assert lines == [
        "(1,234 earlier messages are not shown: they are in the event histories of earlier "
        "runs of this workflow)",
        "You: hi",
        "Agent: hello",
        "       there",
    ]


class FlakyConversation:
    """A workflow handle whose first Update attempts fail the way a busy server fails them."""

    def __init__(self, failures: list[Exception], status: WorkflowExecutionStatus) -> None:
        self.failures = failures
        self.status = status
        self.update_ids: list[str] = []

    async def start_update(self, update: object, message: str, *, id: str, **_: object) -> Any:
        self.update_ids.append(id)
        if self.failures:
            raise self.failures.pop(0)
        return SimpleNamespace(result=lambda: asyncio.sleep(0, result=f"answer to {message}"))

    async def describe(self) -> Any:
        return SimpleNamespace(status=self.status)

    async def query(self, *_: object, **__: object) -> Any:
        raise RPCError("not now", RPCStatusCode.UNAVAILABLE, b"")


RUNNING = WorkflowExecutionStatus.RUNNING


def rpc_error(status: RPCStatusCode, message: str) -> RPCError:
    return RPCError(message, status, b"")


async def session_with(
    client: Client, conversation: FlakyConversation
) -> tuple[ChatSession, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    session = ChatSession(
        client, Terminal(io.StringIO(), out, err), web_ui=None, resume_command="client.py"
    )
    session.conversation_id = "conversation-flaky"
    session._handle = conversation  # type: ignore[assignment]
    return session, out, err


async def test_a_busy_server_and_a_run_in_transition_are_retried_with_one_update_id(
    served: Client, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(retries, "RETRY_LIMIT_SECONDS", 30.0)
    conversation = FlakyConversation(
        [
            rpc_error(RPCStatusCode.RESOURCE_EXHAUSTED, "too many outstanding updates"),
            rpc_error(RPCStatusCode.NOT_FOUND, "workflow execution already completed"),
            rpc_error(RPCStatusCode.RESOURCE_EXHAUSTED, "too many outstanding updates"),
        ],
        WorkflowExecutionStatus.RUNNING,
    )
    session, out, err = await session_with(served, conversation)

    await session.send("hello")

    assert err.getvalue() == ""
    assert out.getvalue().splitlines()[-1] == "Agent: answer to hello"
    assert len(conversation.update_ids) == 4
    assert len(set(conversation.update_ids)) == 1  # a retry can never be answered twice


async def test_a_conversation_that_really_ended_is_one_line(served: Client):
    conversation = FlakyConversation(
        [rpc_error(RPCStatusCode.NOT_FOUND, "workflow execution already completed")],
        WorkflowExecutionStatus.COMPLETED,
    )
    session, out, err = await session_with(served, conversation)

    await session.send("hello")

    assert err.getvalue() == (
        "Error: conversation conversation-flaky has ended: /new starts another\n"
    )
    assert "Agent:" not in out.getvalue()


def update_timed_out() -> WorkflowUpdateRPCTimeoutOrCancelledError:
    """What `start_update` raises when its RPC times out (the SDK chains the RPC error)."""
    err = WorkflowUpdateRPCTimeoutOrCancelledError()
    err.__cause__ = rpc_error(RPCStatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")
    return err


async def test_an_update_rpc_timeout_is_retried_with_the_same_update_id(served: Client):
    conversation = FlakyConversation([update_timed_out(), update_timed_out()], RUNNING)
    session, out, err = await session_with(served, conversation)

    await session.send("hello")

    assert out.getvalue().splitlines()[-1] == "Agent: answer to hello"
    assert len(conversation.update_ids) == 3
    assert len(set(conversation.update_ids)) == 1
    assert err.getvalue() == (
        f"lost contact with the Temporal server at {address(served)}: retrying for up to 60 s "
        "(Ctrl-C to leave)\n"
    )


IN_FLIGHT_LIMIT = "limit on number of concurrent in-flight updates has been reached (10)"


async def test_the_in_flight_update_limit_is_too_many_queued_messages_and_never_ends_the_chat(
    served: Client, monkeypatch: pytest.MonkeyPatch
):
    # Other RESOURCE_EXHAUSTED errors give up after RETRY_LIMIT_SECONDS; this one never does.
    monkeypatch.setattr(retries, "RETRY_LIMIT_SECONDS", 0.1)
    conversation = FlakyConversation(
        [rpc_error(RPCStatusCode.RESOURCE_EXHAUSTED, IN_FLIGHT_LIMIT)] * 4, RUNNING
    )
    session, out, err = await session_with(served, conversation)

    await session.send("hello")

    assert err.getvalue() == (
        "too many queued messages in this conversation: yours is sent as soon as one of them "
        "is answered (Ctrl-C to leave)\n"
    )
    assert out.getvalue().splitlines()[-1] == "Agent: answer to hello"
    assert len(conversation.update_ids) == 5
    assert len(set(conversation.update_ids)) == 1


async def test_a_message_over_the_limit_is_refused_before_sending_and_the_chat_goes_on(
    served: Client,
):
    out, err = io.StringIO(), io.StringIO()
    session = ChatSession(
        served, Terminal(io.StringIO(), out, err), web_ui=None, resume_command="uv run client.py"
    )
    await session.start_new()

    started = asyncio.get_running_loop().time()
    await session.send("x" * 3_000_000)  # above the 2 MB payload limit, below gRPC's 4 MB
    refused_in = asyncio.get_running_loop().time() - started
    await session.send("Calculate 2 * 3")

    assert refused_in < 2
    assert err.getvalue() == "Error: the message has 3,000,000 characters; the limit is 32,000\n"
    assert out.getvalue().splitlines()[-1] == "Agent: 2 * 3 = 6"
    history = await session.handle.query(AgentWorkflow.get_history)
    assert [m.content for m in history.messages if m.role == "user"] == ["Calculate 2 * 3"]
    await end(served, session.conversation_id)


async def test_piped_client_refuses_a_3_mb_line_and_answers_the_next(served: Client):
    result = await run_client(served, "x" * 3_000_000 + "\nCalculate 2 * 3\nquit\n")

    assert result.returncode == 0
    assert_plain(result)
    assert result.stderr == "Error: the message has 3,000,000 characters; the limit is 32,000\n"
    assert result.lines("Agent: ") == ["Agent: 2 * 3 = 6"]
    await end(served, conversation_of(result))


class FullRun(BaseModel):
    """Input of `RunFullAtFirst`: how long its first run refuses messages as full."""

    full_for_seconds: float


@workflow.defn(sandboxed=False)
class RunFullAtFirst:
    """A conversation whose first run is full: its validator refuses every message with
    `ConversationRunFull` until it continues as new; the next run answers, naming the run and
    the Update id it saw."""

    def __init__(self) -> None:
        self.full = True

    @workflow.run
    async def run(self, input: FullRun) -> None:
        if input.full_for_seconds:
            await asyncio.sleep(input.full_for_seconds)
            workflow.continue_as_new(FullRun(full_for_seconds=0))
        self.full = False
        await workflow.wait_condition(lambda: False)

    @workflow.update(name="send_message")
    async def send_message(self, message: str) -> str:
        info = workflow.current_update_info()
        assert info is not None
        return f"{message}, answered by run {workflow.info().run_id} for {info.id}"

    @send_message.validator
    def validate(self, message: str) -> None:
        if self.full:
            raise ApplicationError("this run is full", type="ConversationRunFull")


@pytest.mark.parametrize(
    ("full_for_seconds", "hint_after_seconds", "hint"),
    [
        pytest.param(1.0, retries.RUN_FULL_HINT_SECONDS, "", id="silent"),
        pytest.param(
            2.0,
            0.5,
            "the conversation is moving to a new run and has not taken your message yet: still "
            "trying (Ctrl-C to leave)\n",
            id="hint-when-it-takes-long",
        ),
    ],
)
async def test_a_full_run_is_retried_with_the_same_update_id_until_the_next_run_takes_it(
    full_for_seconds: float,
    hint_after_seconds: float,
    hint: str,
    served: Client,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(retries, "RUN_FULL_HINT_SECONDS", hint_after_seconds)
    task_queue = f"run-full-{uuid.uuid4()}"
    conversation = f"conversation-{uuid.uuid4().hex[:8]}"
    async with Worker(served, task_queue=task_queue, workflows=[RunFullAtFirst]):
        first_run = await served.start_workflow(
            RunFullAtFirst.run,
            FullRun(full_for_seconds=full_for_seconds),
            id=conversation,
            task_queue=task_queue,
        )
        out, err = io.StringIO(), io.StringIO()
        session = ChatSession(
            served, Terminal(io.StringIO(), out, err), web_ui=None, resume_command="client.py"
        )
        await session.attach(conversation)
        await session.send("hello")
        second_run = (await served.get_workflow_handle(conversation).describe()).run_id
        await served.get_workflow_handle(conversation).terminate("test over")

    assert err.getvalue() == hint
    assert out.getvalue().splitlines()[0] == "You: hello"
    answer = out.getvalue().splitlines()[1]
    assert answer.startswith(f"Agent: hello, answered by run {second_run} for message-")
    assert second_run != first_run.run_id

"""The chat session behind `client.py` and `uv run demo`: one conversation with the agent workflow.

It starts a conversation (an `AgentWorkflow` run) or attaches to one, reads the user's lines,
sends each as the Update `send_message`, and prints the answer. While a turn runs it polls the
workflow's `get_status` query, so the progress line on a terminal says what the agent is really
doing; with piped input or output it prints plain `You:` / `Agent:` lines and nothing else on
stdout. Every failure the user can meet (no server, no worker, a rejected message, a server that
pushes back) is one line on stderr, never a traceback. Leaving the chat does not end the
conversation: it stays resumable with `--conversation-id` until `/end`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TextIO, TypeVar

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from app.config import load_env
from app.llm_client import choose_model
from app.models import AgentInput, AgentResult, AgentStatus, Message
from app.shared import DEFAULT_TEMPORAL_ADDRESS, ORCHESTRATOR_NAMESPACE, ORCHESTRATOR_TASK_QUEUE
from app.temporal_client import connect
from app.workflow import AgentWorkflow, failure_message

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 5.0
# A terminal's progress line is redrawn this often; each redraw asks the workflow for its status.
STATUS_POLL_SECONDS = 0.12
# Without a terminal nobody watches a spinner: ask only often enough to notice a silent worker.
PLAIN_STATUS_POLL_SECONDS = 1.0
# An Update waits for a worker forever; after this long we tell the user why.
ACCEPT_HINT_SECONDS = 10.0
SILENT_WORKER_HINT_SECONDS = 10.0
# How long to keep retrying while the server is unreachable or pushes back, before giving up.
RETRY_LIMIT_SECONDS = 60.0
QUERY_TIMEOUT = timedelta(seconds=2)
EXIT_GRACE_SECONDS = 0.1
ECHO_LIMIT = 500
HISTORY_LINE_LIMIT = 120
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"}

HELP = """Type a message and press Enter. Commands:
  /history  show this conversation (tool calls indented)
  /new      start a new conversation (this one stays open)
  /end      end this conversation and leave
  /help     this list
  quit      leave; the conversation stays open to resume later (also exit, Ctrl-D, Ctrl-C)"""

QUIT_WORDS = {"quit", "exit", "/quit", "/exit"}


class ChatError(Exception):
    """A failure of one action, explained in one line; the chat goes on."""


class FatalChatError(ChatError):
    """A failure that ends the chat, explained in one line."""


def temporal_address() -> str:
    """The server address the programs connect to (environment, `.env`, profile, or default)."""
    load_env()
    target = ClientConfig.load_client_connect_config().get("target_host")
    return str(target or DEFAULT_TEMPORAL_ADDRESS)


def split_address(address: str) -> tuple[str, int | None]:
    """`host:port` as (host, port); the port is None when absent or not a number."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return address, None
    return host, int(port)


def is_local(address: str) -> bool:
    """Whether `address` names this machine."""
    return split_address(address)[0].lower() in LOCAL_HOSTS


def web_ui_for(address: str) -> str | None:
    """The dev server's Web UI for a local address: the gRPC port plus 1000, as it defaults to."""
    host, port = split_address(address)
    if port is None or not is_local(address):
        return None
    return f"http://localhost:{port + 1000}"


def workflow_link(web_ui: str | None, namespace: str, workflow_id: str) -> str | None:
    """The Web UI page of one workflow, or None when there is no UI to link to."""
    if web_ui is None:
        return None
    return f"{web_ui.rstrip('/')}/namespaces/{namespace}/workflows/{workflow_id}"


def connection_problem(address: str, err: BaseException) -> str:
    """One line saying why `address` did not answer, and what to do about it."""
    text = str(err)
    if isinstance(err, TimeoutError):
        reason = f"no answer within {CONNECT_TIMEOUT_SECONDS:g} s"
    elif "Connection refused" in text:
        reason = "connection refused"
    elif "dns error" in text or "Name or service not known" in text:
        reason = "unknown host"
    else:
        reason = one_line(text.removeprefix("Failed client connect: "), 160)
    return (
        f"cannot reach Temporal at {address}: is the server running? Start it with "
        f"`uv run temporal server start-dev`, or run everything with `uv run demo` ({reason})"
    )


async def connect_to(address: str) -> Client:
    """A client of the orchestrator's namespace at `address`, or a one-line `FatalChatError`."""
    try:
        return await asyncio.wait_for(connect(ORCHESTRATOR_NAMESPACE), CONNECT_TIMEOUT_SECONDS)
    except Exception as err:  # the SDK reports an unreachable server as a RuntimeError
        raise FatalChatError(connection_problem(address, err)) from None


def quiet_sdk_logs() -> None:
    """Keep the SDK's native log lines (retry warnings) off the chat's stdout.

    The chat turns every failure into its own one-line message; the SDK's default runtime
    would also print its retry warnings to stdout, with colour codes, into the transcript.
    """
    quiet = Runtime(telemetry=TelemetryConfig(logging=None))
    Runtime.set_default(quiet, error_if_already_set=False)


def describe_model() -> str:
    """The model the agent answers with, and why the offline one if it is (imports LiteLLM)."""
    return choose_model().describe()


async def in_daemon_thread(function: Callable[[], T]) -> T:
    """`function()` on a daemon thread.

    Unlike `asyncio.to_thread`, a daemon thread never delays the exit: a Ctrl-C while the thread
    is blocked reading a terminal would otherwise wait for the next Enter.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, error = function(), None
        except BaseException as err:  # handed to the awaiting task
            result, error = None, err
        try:
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            pass

    threading.Thread(target=work, daemon=True).start()
    return await future


def one_line(text: str, limit: int) -> str:
    """`text` on one line, shortened to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def indent_answer(prefix: str, text: str) -> str:
    """`prefix` and `text`, continuation lines aligned under the first."""
    return prefix + text.replace("\n", "\n" + " " * len(prefix))


def format_history(messages: list[Message], earlier_messages: int) -> list[str]:
    """The conversation as lines: user and agent messages, tool calls and results indented."""
    lines = []
    if earlier_messages:
        lines.append(
            f"({earlier_messages:,} earlier messages are not shown: they are in the event "
            "histories of earlier runs of this workflow)"
        )
    for message in messages:
        if message.role == "user":
            lines.extend(indent_answer("You: ", message.content or "").splitlines())
        elif message.role == "tool":
            result = one_line(message.content or "", HISTORY_LINE_LIMIT)
            lines.append(f"    <- {message.name}: {result}")
        else:
            for call in message.tool_calls:
                lines.append("    -> " + one_line(f"{call.name}({call.arguments})", 110))
            if message.content:
                lines.extend(indent_answer("Agent: ", message.content).splitlines())
    if not messages:
        lines.append("(no messages yet)")
    return lines


def status_text(status: AgentStatus) -> str:
    """What the workflow says it is doing, as the progress line shows it."""
    if status.state == "idle":
        text = "waiting for the workflow"
    else:
        text = status.detail or status.state.replace("_", " ")
    if status.queued_messages:
        text += f" ({status.queued_messages} more queued)"
    return text


def silent_workflow_hint(problem: str) -> str:
    """Why a running turn has gone quiet, from the error its status query got."""
    if "failed state" in problem:
        # The server says the workflow task keeps failing: the worker's log says why.
        return (
            "the conversation's workflow task is failing on the orchestrator worker (see its "
            "log; has `uv run python -m app.setup_nexus` run?): the turn carries on once fixed"
        )
    return (
        "the orchestrator worker is not answering: is `uv run orchestrator_worker.py` running? "
        "The turn carries on where it stopped when a worker is back"
    )


class Terminal:
    """The user's side of the chat: lines in, transcript on stdout, errors and hints on stderr."""

    def __init__(self, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        # A person is typing: show a prompt, and let the terminal echo what they type.
        self.interactive = _isatty(stdin) and _isatty(stdout)
        # Only a real terminal gets a redrawn progress line (ANSI); pipes and files get plain text.
        self.live = self.interactive and os.environ.get("TERM") != "dumb"
        encoding = (getattr(stdout, "encoding", None) or "").lower()
        self.frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏" if "utf" in encoding else "|/-\\"
        self._status_shown = False

    @classmethod
    def from_stdio(cls) -> Terminal:
        """The process's own stdin, stdout and stderr, never failing on unencodable text."""
        for stream in (sys.stdin, sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, ValueError, OSError):
                stream.reconfigure(errors="replace")  # type: ignore[union-attr]
        return cls(sys.stdin, sys.stdout, sys.stderr)

    def say(self, text: str) -> None:
        """A line of the transcript."""
        self.clear_status()
        print(text, file=self.stdout, flush=True)

    def error(self, text: str) -> None:
        """A one-line problem report."""
        self.clear_status()
        self.stdout.flush()
        print(text, file=self.stderr, flush=True)

    def status(self, text: str) -> None:
        """Redraw the progress line (terminals only)."""
        if not self.live:
            return
        width = shutil.get_terminal_size().columns - 1
        self.stdout.write("\r\x1b[K" + text[:width])
        self.stdout.flush()
        self._status_shown = True

    def clear_status(self) -> None:
        """Erase the progress line, if one is shown."""
        if self._status_shown:
            self.stdout.write("\r\x1b[K")
            self.stdout.flush()
            self._status_shown = False

    async def read_line(self, prompt: str) -> str | None:
        """The next line the user typed, without its newline; None at end of input."""
        if self.interactive:
            self.stdout.write(prompt)
            self.stdout.flush()
        line = await in_daemon_thread(self.stdin.readline)
        return line.rstrip("\r\n") if line else None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@dataclass
class _Turn:
    """What the progress line needs to know about the turn in flight."""

    started: float
    accepted: bool = False


class ChatSession:
    """One user's chat with one conversation at a time."""

    def __init__(
        self,
        client: Client,
        terminal: Terminal,
        *,
        web_ui: str | None,
        resume_command: str,
    ) -> None:
        self.client = client
        self.terminal = terminal
        self.web_ui = web_ui
        self.resume_command = resume_command
        self.address = client.service_client.config.target_host
        self.conversation_id = ""
        self._handle: WorkflowHandle[AgentWorkflow, AgentResult] | None = None
        self._open = False
        self._in_flight: _Turn | None = None

    @property
    def handle(self) -> WorkflowHandle[AgentWorkflow, AgentResult]:
        """The current conversation's workflow, whichever run is current."""
        assert self._handle is not None, "no conversation yet"
        return self._handle

    async def start_new(self) -> None:
        """Start a new conversation on the orchestrator's task queue."""
        workflow_id = f"conversation-{uuid.uuid4().hex[:8]}"
        try:
            await self.client.start_workflow(
                AgentWorkflow.run, AgentInput(), id=workflow_id, task_queue=ORCHESTRATOR_TASK_QUEUE
            )
        except RPCError as err:
            raise FatalChatError(f"cannot start a conversation: {self._rpc_problem(err)}") from None
        self._use(workflow_id)

    async def attach(self, conversation_id: str) -> None:
        """Attach to a running conversation; a finished or unknown one is a `FatalChatError`."""
        handle = self.client.get_workflow_handle_for(AgentWorkflow.run, conversation_id)
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise FatalChatError(
                    f"there is no conversation {conversation_id} in namespace "
                    f"{self.client.namespace} at {self.address}"
                ) from None
            raise FatalChatError(
                f"cannot look up conversation {conversation_id}: {self._rpc_problem(err)}"
            ) from None
        if description.status != WorkflowExecutionStatus.RUNNING:
            state = description.status.name.lower() if description.status else "closed"
            raise FatalChatError(
                f"conversation {conversation_id} has ended ({state}); start a new one with "
                f"`{self.resume_command}`"
            )
        self._use(conversation_id)

    def _use(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        # No run id: messages follow the conversation across continue-as-new.
        self._handle = self.client.get_workflow_handle_for(AgentWorkflow.run, conversation_id)
        self._open = True

    def banner(self, model: str | None, resumed: bool) -> None:
        """The conversation id, the model and the Web UI link."""
        state = "resumed" if resumed else "new"
        self.terminal.say(f"Conversation: {self.conversation_id} ({state})")
        if model:
            self.terminal.say(f"Model: {model}")
        link = workflow_link(self.web_ui, self.client.namespace, self.conversation_id)
        if link:
            self.terminal.say(f"Web UI: {link}")
        if self.terminal.interactive:
            self.terminal.say("Type a message; /help lists the commands; quit leaves.")

    async def warn_if_no_worker(self) -> None:
        """Say at once when no orchestrator worker polls: messages would wait for one."""
        if await self._worker_polls() is False:
            self.terminal.error(self._no_worker_hint())

    async def run(self) -> int:
        """Read and answer lines until quit, end of input or `/end`; returns the exit code."""
        try:
            while True:
                line = await self.terminal.read_line("You: ")
                if line is None:
                    if self.terminal.interactive:
                        self.terminal.say("")
                    return 0
                text = line.strip()
                if not text:
                    continue
                if text.lower() in QUIT_WORDS:
                    return 0
                if text.startswith("/"):
                    if await self.command(text):
                        return 0
                    continue
                await self.send(line)
        except FatalChatError as err:
            self.terminal.error(str(err))
            return 1
        except asyncio.CancelledError:
            if self.terminal.interactive:
                self.terminal.say("")  # leave the prompt's line before saying goodbye
            raise
        finally:
            self.goodbye()

    async def command(self, text: str) -> bool:
        """Run one slash command; True when the chat should end."""
        name = text.split()[0].lower()
        if name == "/help":
            self.terminal.say(HELP)
        elif name == "/history":
            await self.show_history()
        elif name == "/new":
            previous = self.conversation_id
            try:
                await self.start_new()
            except ChatError as err:  # this conversation is still usable
                self.terminal.error(f"Error: {err}")
                return False
            self.terminal.say(f"Started {self.conversation_id}; {previous} stays open.")
            self.banner(None, resumed=False)
        elif name == "/end":
            await self.end()
            return True
        else:
            self.terminal.error(f"Error: unknown command {name}: /help lists the commands")
        return False

    async def send(self, text: str) -> None:
        """Send one message and print the agent's answer, or a one-line error."""
        if not self.terminal.interactive:
            self.terminal.say("You: " + (text if len(text) <= ECHO_LIMIT else _shortened(text)))
        try:
            answer = await self._turn(text)
        except FatalChatError:
            raise
        except ChatError as err:
            self.terminal.error(f"Error: {err}")
            return
        self.terminal.say(indent_answer("Agent: ", answer))

    async def show_history(self) -> None:
        """Print the conversation from the workflow's `get_history` query."""
        try:
            view = await self.handle.query(AgentWorkflow.get_history, rpc_timeout=QUERY_TIMEOUT)
        except Exception as err:  # a query fails in several ways; all mean "not now"
            self.terminal.error(
                f"Error: cannot read the history of {self.conversation_id}: "
                f"{one_line(failure_message(err), 160)} (is the orchestrator worker running?)"
            )
            return
        self.terminal.say(f"History of {self.conversation_id}:")
        for line in format_history(view.messages, view.earlier_messages):
            self.terminal.say(line)

    async def end(self) -> None:
        """Ask the workflow to end the conversation once its answered turns are done."""
        try:
            await self.handle.signal(AgentWorkflow.end_conversation)
        except RPCError as err:
            raise FatalChatError(
                f"cannot end {self.conversation_id}: {self._rpc_problem(err)}"
            ) from None
        self._open = False
        try:
            result = await asyncio.wait_for(self.handle.result(), 5)
        except Exception:  # a timeout, or a failure: the worker finishes it later
            self.terminal.say(f"Conversation {self.conversation_id} is ending.")
            return
        turns = "1 turn" if result.turns == 1 else f"{result.turns} turns"
        self.terminal.say(f"Conversation {self.conversation_id} ended after {turns}.")

    def goodbye(self) -> None:
        """Say how to come back to a conversation that stays open."""
        if not self._open:
            return
        if self._in_flight is not None and self._in_flight.accepted:
            self.terminal.say(
                "The agent is still working on your last message; /history will show its "
                "answer when you come back."
            )
        elif self._in_flight is not None:
            self.terminal.say(
                "Your last message was not taken up by a worker yet: check /history when you "
                "come back, and send it again if it is missing."
            )
        self.terminal.say(
            f"Conversation {self.conversation_id} stays open: resume it with "
            f"`{self.resume_command} --conversation-id {self.conversation_id}`."
        )

    async def _turn(self, text: str) -> str:
        """Deliver the message, wait for the answer, and show progress meanwhile."""
        turn = _Turn(started=time.monotonic())
        progress = asyncio.create_task(self._show_progress(turn))
        self._in_flight = turn
        try:
            update = await self._deliver(text, f"message-{uuid.uuid4()}")
            turn.accepted = True
            return await self._answer(update)
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
            self.terminal.clear_status()
            current = asyncio.current_task()
            if current is None or not current.cancelling():
                self._in_flight = None  # on Ctrl-C goodbye() says what became of the message

    async def _deliver(self, text: str, update_id: str) -> WorkflowUpdateHandle[str]:
        """Send the Update until the workflow accepts it; one update id, so never twice."""
        retries = _Retries(self)
        while True:
            try:
                update = await self.handle.start_update(
                    AgentWorkflow.send_message,
                    text,
                    id=update_id,
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                )
            except WorkflowUpdateFailedError as err:  # the validator said no
                raise ChatError(failure_message(err.cause)) from None
            except WorkflowUpdateRPCTimeoutOrCancelledError as err:
                _reraise_cancellation(err)
                await retries.after(_as_rpc_error(err), sending=True)
            except RPCError as err:
                await retries.after(err, sending=True)
                continue
            return update

    async def _answer(self, update: WorkflowUpdateHandle[str]) -> str:
        """The Update's result, waiting through server restarts."""
        retries = _Retries(self)
        while True:
            try:
                return await update.result()
            except WorkflowUpdateFailedError as err:
                raise ChatError(failure_message(err.cause)) from None
            except WorkflowUpdateRPCTimeoutOrCancelledError as err:
                _reraise_cancellation(err)
                await retries.after(_as_rpc_error(err), sending=False)
            except RPCError as err:
                await retries.after(err, sending=False)

    async def _show_progress(self, turn: _Turn) -> None:
        """Redraw the progress line from the workflow's status; explain long silences."""
        frame = 0
        hinted_accept = hinted_silent = False
        last_heard = time.monotonic()
        while True:
            now = time.monotonic()
            if not turn.accepted:
                text = "sending"
                if now - turn.started > ACCEPT_HINT_SECONDS and not hinted_accept:
                    hinted_accept = True
                    self.terminal.error(await self._slow_acceptance_hint())
            else:
                status, problem = await self._status()
                if status is not None:
                    last_heard, text = now, status_text(status)
                else:
                    text = "waiting for the orchestrator worker"
                    if now - last_heard > SILENT_WORKER_HINT_SECONDS and not hinted_silent:
                        hinted_silent = True
                        self.terminal.error(silent_workflow_hint(problem))
            frame += 1
            elapsed = time.monotonic() - turn.started
            self.terminal.status(
                f"{self.terminal.frames[frame % len(self.terminal.frames)]} {text}"
                f" ({elapsed:.1f} s)"
            )
            live = self.terminal.live
            await asyncio.sleep(STATUS_POLL_SECONDS if live else PLAIN_STATUS_POLL_SECONDS)

    async def _status(self) -> tuple[AgentStatus | None, str]:
        """The workflow's status, or None and why the query failed."""
        try:
            status = await self.handle.query(
                AgentWorkflow.get_status, rpc_timeout=timedelta(seconds=1)
            )
        except Exception as err:  # no worker, a failing workflow task, a server restart
            return None, failure_message(err)
        return status, ""

    async def _worker_polls(self) -> bool | None:
        """Whether a worker polls the orchestrator's queue; None when the server won't say."""
        request = DescribeTaskQueueRequest(
            namespace=self.client.namespace,
            task_queue=TaskQueue(name=ORCHESTRATOR_TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        try:
            response = await self.client.workflow_service.describe_task_queue(
                request, timeout=timedelta(seconds=2)
            )
        except RPCError:
            return None
        return bool(response.pollers)

    def _no_worker_hint(self) -> str:
        return (
            f"no orchestrator worker is polling {ORCHESTRATOR_TASK_QUEUE}: start it with "
            "`uv run orchestrator_worker.py` (messages wait until one does)"
        )

    async def _slow_acceptance_hint(self) -> str:
        if await self._worker_polls() is False:
            return (
                f"your message is waiting: no orchestrator worker is polling "
                f"{ORCHESTRATOR_TASK_QUEUE} (start it with `uv run orchestrator_worker.py`)"
            )
        return (
            f"no orchestrator worker has taken your message in {ACCEPT_HINT_SECONDS:g} s: is "
            "`uv run orchestrator_worker.py` running? (still waiting)"
        )

    def _rpc_problem(self, err: RPCError) -> str:
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            return f"Temporal at {self.address} is not answering"
        return one_line(err.message or str(err), 200)


class _Retries:
    """Backoff for the errors a send can meet and survive; anything else is one line and done."""

    def __init__(self, session: ChatSession) -> None:
        self.session = session
        self.delay = 0.2
        self.since: float | None = None
        self.told = False

    async def after(self, err: RPCError, *, sending: bool) -> None:
        """Sleep before the next attempt, or raise a `ChatError` saying why there is none."""
        session = self.session
        now = time.monotonic()
        self.since = self.since or now
        if err.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            # The server's cap on Updates in flight per workflow, or its rate limit: wait.
            pass
        elif err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            # Between two runs of a continue-as-new the old run is closed and the new one may
            # not be visible yet; only a conversation that is really over is an error.
            if sending:
                await self._fail_unless_running(err)
            else:
                raise ChatError(one_line(err.message, 200))
        elif err.status in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.UNKNOWN,
            RPCStatusCode.CANCELLED,
        ):
            if not self.told:
                self.told = True
                session.terminal.error(
                    f"lost contact with Temporal at {session.address}: retrying for up to "
                    f"{RETRY_LIMIT_SECONDS:g} s (Ctrl-C to leave)"
                )
        else:
            raise ChatError(session._rpc_problem(err))
        if now - self.since > RETRY_LIMIT_SECONDS:
            raise FatalChatError(
                f"gave up after {RETRY_LIMIT_SECONDS:g} s: {session._rpc_problem(err)}; resume "
                f"later with `{session.resume_command} --conversation-id "
                f"{session.conversation_id}`"
            )
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 2.0)

    async def _fail_unless_running(self, err: RPCError) -> None:
        session = self.session
        try:
            description = await session.handle.describe()
        except RPCError as describe_err:
            if describe_err.status == RPCStatusCode.NOT_FOUND:
                session._open = False
                raise ChatError(
                    f"conversation {session.conversation_id} no longer exists: /new starts another"
                ) from None
            return  # cannot tell: retry
        if description.status != WorkflowExecutionStatus.RUNNING:
            session._open = False
            raise ChatError(
                f"conversation {session.conversation_id} has ended: /new starts another"
            )


def _reraise_cancellation(err: BaseException) -> None:
    """The SDK turns our own cancellation (Ctrl-C) into a timeout error: undo that."""
    if isinstance(err.__cause__, asyncio.CancelledError):
        raise asyncio.CancelledError()


def _as_rpc_error(err: WorkflowUpdateRPCTimeoutOrCancelledError) -> RPCError:
    """The RPC error behind an Update call's timeout, for `_Retries`."""
    if isinstance(err.__cause__, RPCError):
        return err.__cause__
    return RPCError(str(err), RPCStatusCode.DEADLINE_EXCEEDED, b"")


def _shortened(text: str) -> str:
    return f"{text[:ECHO_LIMIT]}... ({len(text):,} characters)"


async def run_session(
    client: Client,
    terminal: Terminal,
    *,
    conversation_id: str | None,
    model: asyncio.Future[str] | None,
    web_ui: str | None,
    resume_command: str,
) -> int:
    """Open (or resume) a conversation and chat until the user leaves; returns the exit code."""
    session = ChatSession(client, terminal, web_ui=web_ui, resume_command=resume_command)
    try:
        if conversation_id:
            await session.attach(conversation_id)
        else:
            await session.start_new()
    except FatalChatError as err:
        terminal.error(str(err))
        return 1
    description = None
    if model is not None:
        try:
            description = await model
        except Exception as err:  # the chat works without knowing the model's name
            description = f"unknown ({one_line(str(err), 100)})"
    session.banner(description, resumed=bool(conversation_id))
    await session.warn_if_no_worker()
    return await session.run()


async def run_until_interrupted(main: Coroutine[Any, Any, int]) -> int:
    """Run `main`; Ctrl-C, SIGTERM or SIGHUP cancel it once so its cleanup runs; then exit 0."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        if not interrupted:  # a second Ctrl-C must not cut the cleanup short
            interrupted = True
            task.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, interrupt)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
            pass
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if interrupted and (current is None or not current.cancelling()):
            return 0
        raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        # Measured: exiting within milliseconds of a Temporal RPC crashed the interpreter in about
        # one run in five (PyGILState_Release: the SDK's native threads were still finishing).
        await asyncio.sleep(EXIT_GRACE_SECONDS)


def parse_args(argv: list[str] | None, prog: str) -> argparse.Namespace:
    """The chat's command line: only which conversation to resume."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Chat with the durable agent (one message per line)."
    )
    parser.add_argument(
        "--conversation-id", help="resume this conversation instead of starting a new one"
    )
    return parser.parse_args(argv)


async def main(
    argv: list[str] | None = None,
    client: Client | None = None,
    *,
    prog: str = "client.py",
    resume_command: str = "uv run client.py",
) -> int:
    """The chat program: connect, open a conversation, chat; returns the exit code."""
    args = parse_args(argv, prog)
    terminal = Terminal.from_stdio()

    async def chat() -> int:
        # Naming the model imports LiteLLM (seconds): do it while connecting.
        model = asyncio.ensure_future(in_daemon_thread(describe_model))
        address = temporal_address()
        if client is None:
            quiet_sdk_logs()
        try:
            connected = client or await connect_to(address)
        except FatalChatError as err:
            terminal.error(str(err))
            return 1
        address = connected.service_client.config.target_host
        return await run_session(
            connected,
            terminal,
            conversation_id=args.conversation_id,
            model=model,
            web_ui=web_ui_for(address),
            resume_command=resume_command,
        )

    return await run_until_interrupted(chat())

"""One user's chat with one conversation: start or attach, send each line, print the answer.

Each message is the Update `send_message` with an Update id of its own, so a retried send never runs
a turn twice. While a turn runs, a terminal shows it live from the conversation's Workflow Stream
(`app.cli.chat.live`), and long silences are explained (`app.cli.chat.silence`). On a terminal each
answer is followed by one dim line saying what the turn used (`get_usage`); piped output stays
`You:`/`Agent:` lines only. Leaving the chat does not end the conversation: it stays resumable with
`--conversation-id` until `/end`, and a chat that attaches while a turn runs (the client was
restarted mid-turn) shows that turn from its start, then its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from app.agent.models import AgentConfig, AgentInput, AgentResult, AgentStatus
from app.agent.workflow import AgentWorkflow
from app.cli.chat.approvals import APPROVAL_COMMANDS, APPROVAL_HELP, ApprovalDesk, LeaveChat
from app.cli.chat.live import LiveView, follow_turn, turn_in_progress, wait_briefly
from app.cli.chat.lookup import State, attach_problem, leaving_line, look_up, server_answers
from app.cli.chat.reports import show_history, show_turn_usage, show_usage
from app.cli.chat.retries import (
    ChatError,
    ConversationClosed,
    FatalChatError,
    Retries,
    RunFull,
    await_answer,
    deliver,
    no_worker_hint,
    rpc_problem,
    slow_acceptance_hint,
)
from app.cli.chat.silence import TurnInFlight, watch_silence
from app.cli.chat.terminal import Terminal, indent_answer, workflow_link
from app.core.errors import failure_message
from app.core.names import ORCHESTRATOR
from app.core.processes import is_polling

# An Update waits for a worker forever; after this long we tell the user why.
ACCEPT_HINT_SECONDS = 10.0
SILENT_WORKER_HINT_SECONDS = 10.0
# The limit of the conversations this client starts (with `AgentInput()`).
MAX_MESSAGE_CHARS = AgentConfig().max_message_chars
ECHO_LIMIT = 500

HELP = """Type a message and press Enter. Commands:
  /history  show this conversation (tool calls indented)
  /usage    tokens and cost of this conversation, turn by turn
  /new      start a new conversation (this one stays open)
  /end      end this conversation and leave
  /help     this list
  quit      leave; the conversation stays open to resume later (also exit, Ctrl-D, Ctrl-C)"""

QUIT_WORDS = {"quit", "exit", "/quit", "/exit"}


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
        self.is_open = False
        self._in_flight: TurnInFlight | None = None
        self.approvals = ApprovalDesk(terminal, lambda: self.handle, self.command, QUIT_WORDS)

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
                AgentWorkflow.run, AgentInput(), id=workflow_id, task_queue=ORCHESTRATOR.task_queue
            )
        except RPCError as err:
            raise FatalChatError(
                f"cannot start a conversation: {rpc_problem(err, self.address)}"
            ) from None
        self._use(workflow_id)

    async def attach(self, conversation_id: str) -> None:
        """Attach to a running conversation; a finished or unknown one is a `FatalChatError`."""
        lookup = await look_up(self.client, conversation_id)
        if problem := attach_problem(lookup, self.client.namespace, self.resume_command):
            raise FatalChatError(problem)
        self._use(conversation_id)

    def _use(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        # No run id: messages follow the conversation across continue-as-new.
        self._handle = self.client.get_workflow_handle_for(AgentWorkflow.run, conversation_id)
        self.is_open = True

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

    async def worker_model(self) -> str:
        """The model the orchestrator worker answers with, as it reports it."""
        status, _ = await self._status()
        if status is None:
            return "not known yet (no orchestrator worker has answered)"
        if status.worker_model is None:
            return "not known yet (the orchestrator worker is still loading LiteLLM)"
        return status.worker_model

    async def warn_if_no_worker(self) -> None:
        """Say at once when no orchestrator worker polls: messages would wait for one."""
        if await self._worker_polls() is False:
            self.terminal.error(no_worker_hint())

    async def run(self, rejoin: bool = False) -> int:
        """Read and answer lines until quit, end of input or `/end`; returns the exit code.

        With `rejoin`, a turn already in progress (a client restarted mid-turn) is shown first."""
        try:
            if rejoin:
                await self.rejoin()
            while True:
                line = await self.approvals.next_line("You: ")
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
        except LeaveChat:
            return 0
        except asyncio.CancelledError:
            if self.terminal.interactive:
                self.terminal.say("")  # leave the prompt's line before saying goodbye
            raise
        finally:
            await self.goodbye()

    async def command(self, text: str) -> bool:
        """Run one slash command; True when the chat should end."""
        name = text.split()[0].lower()
        if name == "/help":
            self.terminal.say(f"{HELP}\n{APPROVAL_HELP}")
        elif name == "/history":
            await self.show_history()
        elif name == "/usage":
            await self.show_usage()
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
        elif name in APPROVAL_COMMANDS:
            await self.approvals.command(text)
        else:
            self.terminal.error(f"Error: unknown command {name}: /help lists the commands")
        return False

    async def send(self, text: str) -> None:
        """Send one message and print the agent's answer, or a one-line error."""
        if not self.terminal.interactive:
            self.terminal.say("You: " + (text if len(text) <= ECHO_LIMIT else _shortened(text)))
        if len(text) > MAX_MESSAGE_CHARS:
            # Refused here: a message of megabytes would fail the workflow task (the server
            # echoes a rejected Update's input), not just be rejected by the validator.
            self.terminal.error(
                f"Error: the message has {len(text):,} characters; "
                f"the limit is {MAX_MESSAGE_CHARS:,}"
            )
            return
        await self._answer(text, f"message-{uuid.uuid4()}")

    async def rejoin(self) -> None:
        """Show the turns the conversation is working on, from their start, and their answers."""
        followed: set[str] = set()
        while (turn := await turn_in_progress(self.handle)) and turn.turn_id not in followed:
            followed.add(turn.turn_id)
            if self.terminal.interactive:  # piped output stays `You:`/`Agent:` lines
                self.terminal.say(f"A turn is in progress; from its start:\nYou: {turn.message}")
            await self._answer(None, turn.turn_id, turn.offset)

    async def _answer(self, text: str | None, update_id: str, from_offset: int = 0) -> None:
        """Send `text` (None: its turn runs already), then print the answer or a one-line error."""
        started = time.monotonic()
        try:
            answer, view = await self._turn(text, update_id, from_offset)
        except FatalChatError:
            raise
        except ConversationClosed as err:
            self.is_open = False
            self.terminal.error(f"Error: {err}")
            return
        except ChatError as err:
            self.terminal.error(f"Error: {err}")
            return
        if view is not None:
            view.answer(answer)
        else:
            self.terminal.say(indent_answer("Agent: ", answer))
        if self.terminal.interactive:
            await show_turn_usage(self.terminal, self.handle, update_id, time.monotonic() - started)

    async def show_history(self) -> None:
        """Print the conversation from the workflow's `get_history` query."""
        await show_history(self.terminal, self.handle)

    async def show_usage(self) -> None:
        """Print the conversation's tokens and cost from the workflow's `get_usage` query."""
        await show_usage(self.terminal, self.handle)

    async def end(self) -> None:
        """Ask the workflow to end the conversation once its answered turns are done."""
        try:
            await self.handle.signal(AgentWorkflow.end_conversation)
        except RPCError as err:
            raise FatalChatError(
                f"cannot end {self.conversation_id}: {rpc_problem(err, self.address)}"
            ) from None
        self.is_open = False
        try:
            result = await asyncio.wait_for(self.handle.result(), 5)
        except Exception:  # a timeout, or a failure: the worker finishes it later
            self.terminal.say(f"Conversation {self.conversation_id} is ending.")
            return
        turns = "1 turn" if result.turns == 1 else f"{result.turns} turns"
        self.terminal.say(f"Conversation {self.conversation_id} ended after {turns}.")

    async def goodbye(self) -> None:
        """Say how to come back to a conversation the server keeps, or why there is none."""
        if not self.is_open:
            return
        lookup = await look_up(self.client, self.conversation_id)
        if lookup.state == State.OPEN:
            self.approvals.goodbye()
            if self._in_flight is not None and self._in_flight.accepted:
                self.terminal.say(
                    "The agent is still working on your last message; /history will show its "
                    "answer when you come back."
                )
            elif self._in_flight is not None:
                self.terminal.say(
                    "Your last message was not taken up by a worker yet: check /history when "
                    "you come back, and send it again if it is missing."
                )
        self.terminal.say(leaving_line(lookup, self.resume_command))

    async def _turn(
        self, text: str | None, update_id: str, from_offset: int
    ) -> tuple[str, LiveView | None]:
        """Deliver the message (unless None), wait for the answer, and show the turn live."""
        turn = TurnInFlight(started=time.monotonic())
        hint_after = (ACCEPT_HINT_SECONDS, SILENT_WORKER_HINT_SECONDS)
        watch = watch_silence(
            turn,
            self.terminal,
            hint_after,
            self._slow_acceptance_hint,
            self._status,
            lambda: server_answers(self.client),
        )
        tasks = [asyncio.create_task(watch)]
        if self.terminal.live:
            turn.view = self.terminal.live_view = LiveView(self.terminal.console).__enter__()
            # A new turn is followed from the log's start (it holds this turn and the one before).
            polling = asyncio.Event()
            follow = follow_turn(
                self.client, self.conversation_id, update_id, from_offset, turn.view, polling
            )
            tasks.append(asyncio.create_task(follow))
            # Its first poll leaves before the message: the workflow streams text only to a
            # conversation someone watches, and decides so when it plans.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(polling.wait(), 1.0)
        self._in_flight = turn
        try:
            retries = self._retries()
            while True:
                if text is None:  # accepted before this chat began: only its answer is awaited
                    update = self.handle.get_update_handle_for(
                        AgentWorkflow.send_message, update_id
                    )
                    if turn.view is not None:  # its past events first, then any y/N question
                        await wait_briefly(turn.view.caught_up.wait())
                else:
                    update = await deliver(self.handle, text, update_id, retries)
                turn.accepted = True
                if turn.view is not None:
                    turn.view.doing = "waiting for the agent"
                try:
                    answer = await self.approvals.during(await_answer(update, self._retries()))
                    return answer, turn.view
                except RunFull:
                    # Refused (a rejection is in no history), so the same id is new to the next
                    # run, which our handle (no run id) reaches once this one continues as new.
                    turn.accepted = False
                    await retries.after_run_full()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if turn.view is not None:
                turn.view.__exit__()
                self.terminal.live_view = None
            current = asyncio.current_task()
            if current is None or not current.cancelling():
                self._in_flight = None  # on Ctrl-C goodbye() says what became of the message

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
        try:
            return await is_polling(self.client, ORCHESTRATOR, timeout=2.0)
        except RPCError:
            return None

    async def _slow_acceptance_hint(self) -> str | None:
        polls = await self._worker_polls()
        if polls is None and not await server_answers(self.client):
            return None  # the server is down, not the worker: the retries say so, naming it
        return slow_acceptance_hint(polls, ACCEPT_HINT_SECONDS)

    def _retries(self) -> Retries:
        return Retries(self.terminal, self.address, self.conversation_id, self.handle.describe)


def _shortened(text: str) -> str:
    return f"{text[:ECHO_LIMIT]}... ({len(text):,} characters)"

"""The interactive chat session, shared by `client.py` and `uv run demo`.

It starts or resumes a conversation (one `AgentWorkflow` per conversation), sends each line the
user types as the Update `send_message`, and prints the answer. While a turn runs on a terminal it
shows what the agent is doing, read from the workflow's `get_status` query. Every failure becomes
one readable line: the conversation itself lives in Temporal and is never lost by the client.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import uuid
from dataclasses import dataclass, field
from typing import TextIO

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError, RPCStatusCode

from app.models import AgentInput, AgentResult, Message
from app.shared import ORCHESTRATOR_TASK_QUEUE
from app.workflow import AgentWorkflow

HELP = """Commands:
  /history   show the conversation so far
  /new       start a new conversation
  /end       end this conversation (it can no longer be resumed)
  /help      show this help
  quit       leave; the conversation stays open: resume it with --conversation-id"""

# How long an update may wait to be accepted before we say that no worker seems to be running.
WORKER_HINT_AFTER_SECONDS = 10.0
# Transient refusals while a run continues as new, or while too many updates are in flight.
_RETRYABLE = {RPCStatusCode.NOT_FOUND, RPCStatusCode.RESOURCE_EXHAUSTED, RPCStatusCode.UNAVAILABLE}


class ChatError(Exception):
    """A failure to show the user as one line."""


def web_ui_link(address: str, namespace: str, workflow_id: str) -> str | None:
    """The dev server's Web UI page for a conversation, when the server is local."""
    host = address.rsplit(":", 1)[0]
    if host not in ("localhost", "127.0.0.1", "[::1]"):
        return None
    return f"http://localhost:8233/namespaces/{namespace}/workflows/{workflow_id}"


def new_conversation_id() -> str:
    """A short, readable workflow id for a new conversation."""
    return f"conversation-{uuid.uuid4().hex[:8]}"


def format_history(messages: list[Message], earlier: int) -> str:
    """The conversation as text: user and agent lines, tool calls and results indented."""
    lines = (
        [f"({earlier} earlier messages are in earlier runs of this workflow)"] if earlier else []
    )
    for message in messages:
        if message.role == "user":
            lines.append(f"You: {message.content}")
        elif message.tool_calls:
            for call in message.tool_calls:
                lines.append(f"    -> {call.name}({_shorten(call.arguments, 100)})")
        elif message.role == "tool":
            lines.append(f"    <- {message.name}: {_shorten(message.content or '', 100)}")
        else:
            lines.append(f"Agent: {message.content}")
    return "\n".join(lines) if lines else "(no messages yet)"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class ChatSession:
    """One user's chat with one conversation at a time."""

    client: Client
    out: TextIO = field(default_factory=lambda: sys.stdout)
    interactive: bool = False
    handle: WorkflowHandle[AgentWorkflow, AgentResult] | None = None

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def start(self, conversation_id: str | None = None) -> str:
        """Start a new conversation, or attach to a running one; returns its id."""
        if conversation_id is None:
            conversation_id = new_conversation_id()
            self.handle = await self.client.start_workflow(
                AgentWorkflow.run,
                AgentInput(),
                id=conversation_id,
                task_queue=ORCHESTRATOR_TASK_QUEUE,
            )
            return conversation_id
        handle = self.client.get_workflow_handle_for(AgentWorkflow.run, conversation_id)
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise ChatError(f"there is no conversation with id {conversation_id!r}") from None
            raise
        if description.status != WorkflowExecutionStatus.RUNNING:
            status = description.status.name.lower() if description.status else "closed"
            raise ChatError(
                f"conversation {conversation_id!r} is {status}: start a new one without "
                "--conversation-id"
            )
        self.handle = handle
        return conversation_id

    async def send(self, text: str) -> str:
        """One turn: send the message, show progress until the answer arrives, return it."""
        handle = self._require_handle()
        update = await self._start_update(handle, text)
        result = asyncio.ensure_future(update.result())
        if self.interactive:
            await self._show_progress(handle, result)
        try:
            return await result
        except WorkflowUpdateFailedError as err:
            raise ChatError(f"Error: {_cause(err)}") from None

    async def _start_update(
        self, handle: WorkflowHandle[AgentWorkflow, AgentResult], text: str
    ) -> WorkflowUpdateHandle[str]:
        # The same update id on every retry, so a retried send is never answered twice.
        update_id = str(uuid.uuid4())
        delay, warned = 0.2, False
        while True:
            start = handle.start_update(
                AgentWorkflow.send_message,
                text,
                id=update_id,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
            try:
                return await asyncio.wait_for(start, timeout=WORKER_HINT_AFTER_SECONDS)
            except TimeoutError:
                if not warned:
                    self.say(
                        f"(waiting: no orchestrator worker answers on {ORCHESTRATOR_TASK_QUEUE}; "
                        "start one with `uv run orchestrator_worker.py`)"
                    )
                    warned = True
            except WorkflowUpdateFailedError as err:
                raise ChatError(f"Error: {_cause(err)}") from None
            except RPCError as err:
                if err.status not in _RETRYABLE or delay > 5:
                    if err.status == RPCStatusCode.NOT_FOUND:
                        raise ChatError(
                            "this conversation has ended: /new starts another"
                        ) from None
                    raise
                await asyncio.sleep(delay)
                delay *= 2

    async def _show_progress(
        self, handle: WorkflowHandle[AgentWorkflow, AgentResult], result: asyncio.Future[str]
    ) -> None:
        spinner = itertools.cycle("|/-\\")
        shown = ""
        while not result.done():
            try:
                status = await handle.query(AgentWorkflow.get_status)
                detail = status.detail or status.state
            except RPCError:
                detail = "waiting"
            line = f"\r{next(spinner)} {detail}"[:100]
            self.out.write(line + " " * max(0, len(shown) - len(line)))
            self.out.flush()
            shown = line
            await asyncio.wait([result], timeout=0.15)
        self.out.write("\r" + " " * len(shown) + "\r")
        self.out.flush()

    async def history(self) -> str:
        view = await self._require_handle().query(AgentWorkflow.get_history)
        return format_history(view.messages, view.earlier_messages)

    async def end(self) -> None:
        await self._require_handle().signal(AgentWorkflow.end_conversation)

    def _require_handle(self) -> WorkflowHandle[AgentWorkflow, AgentResult]:
        if self.handle is None:
            raise ChatError("no conversation is open")
        return self.handle


def _cause(err: BaseException) -> str:
    cause = err.__cause__
    return str(getattr(cause, "message", None) or cause or err)


async def read_line(prompt: str, interactive: bool) -> str | None:
    """The next line of input (None at end of input), without blocking the event loop."""
    if interactive:
        try:
            return await asyncio.to_thread(input, prompt)
        except EOFError:
            return None
    line = await asyncio.to_thread(sys.stdin.readline)
    return line.rstrip("\n") if line else None


async def chat_loop(session: ChatSession) -> None:
    """Read messages and commands until `quit` or end of input."""
    while True:
        line = await read_line("You: ", session.interactive)
        if line is None:
            break
        text = line.strip()
        if not text:
            continue
        if not session.interactive:
            session.say(f"You: {text}")
        if text.lower() in ("quit", "exit", "/quit", "/exit"):
            break
        try:
            if text == "/help":
                session.say(HELP)
            elif text == "/history":
                session.say(await session.history())
            elif text == "/new":
                session.say(f"New conversation: {await session.start()}")
            elif text == "/end":
                await session.end()
                session.say("Conversation ended. /new starts another one.")
            elif text.startswith("/"):
                session.say(f"Unknown command {text!r}. /help lists the commands.")
            else:
                session.say(f"Agent: {await session.send(text)}")
        except ChatError as err:
            session.say(str(err))
        except RPCError as err:
            session.say(f"Error: Temporal refused the request: {err.message}")

"""The chat's side of tool approval: show each tool call that waits for a person, and decide it.

While a turn runs, `ApprovalDesk.during` watches the workflow's `get_pending_approvals` query. A
call that waits is shown inline; on a terminal the user answers
`Allow create_jira_issue(project=PROJ, ...)? [y/N]`, and with piped input the next lines are read
while the turn waits, so `/approve CALL_ID` and `/deny CALL_ID [note]` decide it. These commands
(and `/pending`) also work between turns, so a second client attached to the conversation can
decide; so can `temporal workflow update execute --name decide_tool_call`. A decision made
elsewhere, or the timeout, ends the question. Piped lines that are neither a decision nor a
command are held, and sent as messages once the turn has answered: nothing typed is lost.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio.client import (
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from app.agent.models import AgentResult
from app.agent.tools.approvals import PendingApproval, ToolDecision, describe_call
from app.agent.workflow import AgentWorkflow
from app.cli.chat.live import QUERY_TIMEOUT
from app.cli.chat.terminal import Terminal, indent_answer
from app.core.connection import one_line
from app.core.errors import failure_message

APPROVAL_COMMANDS = ("/approve", "/deny", "/pending")
APPROVAL_HELP = """Tools that change things wait for your approval:
  y, or n [note]          answer the question the chat asks (on a terminal)
  /pending                list the tool calls that wait
  /approve [CALL_ID]      let one run (CALL_ID may be left out when only one waits)
  /deny [CALL_ID] [note]  refuse it; the agent reads the note"""
# How often a running turn is checked for calls that wait (and for calls decided elsewhere).
POLL_SECONDS = 0.25
PLAIN_POLL_SECONDS = 0.5
DECISION_TIMEOUT = timedelta(seconds=30)
# After deciding on another session's turn, wait this long to show the agent's answer here.
FOLLOW_SECONDS = 60.0
PROMPT_ARGUMENTS_LIMIT = 60
_YES = {"y", "yes"}
_NO = re.compile(r"(?:n|no)(?:[\s:,]+(?P<note>.+))?", re.I | re.S)

Handle = WorkflowHandle[AgentWorkflow, AgentResult]


class LeaveChat(Exception):
    """The user asked to leave while a tool call was waiting for approval."""


def question(pending: PendingApproval) -> str:
    """The y/N question for one call, as the terminal asks it."""
    call = describe_call(pending.tool, pending.arguments, PROMPT_ARGUMENTS_LIMIT)
    return f"Allow {call}? [y/N] "


def deadline(pending: PendingApproval) -> str:
    """When `pending` counts as denied, in the user's local time."""
    return f"{pending.expires_at.astimezone():%H:%M:%S %Z}"


def how_to_decide(pending: PendingApproval) -> str:
    """The commands that decide `pending`."""
    return f"/approve {pending.call_id} or /deny {pending.call_id} [note]"


class ApprovalDesk:
    """Asks the user about tool calls that wait for approval, and sends the decisions."""

    def __init__(
        self,
        terminal: Terminal,
        handle: Callable[[], Handle],
        run_command: Callable[[str], Awaitable[bool]],
        quit_words: set[str],
    ) -> None:
        self.terminal = terminal
        self._handle = handle
        self._run_command = run_command
        self._quit_words = quit_words
        # Piped lines that arrived while a call waited: the chat sends them after the turn.
        self.held_lines: list[str] = []
        # Asked about already: (call id, when it was asked), as models reuse call ids across turns.
        self._asked: set[tuple[str, datetime]] = set()
        self._input_closed = False
        self._abandoned_question = False
        self._waiting: PendingApproval | None = None
        self._in_turn = False

    async def during(self, answer: Awaitable[str]) -> str:
        """Await the turn's `answer`; meanwhile ask about every call that waits for approval."""
        turn = asyncio.ensure_future(answer)
        self._in_turn = True
        try:
            while (pending := await self._next_question(turn)) is not None:
                await self._ask(pending, turn)
            return await turn
        finally:
            self._in_turn = False
            if turn.done():
                self._waiting = None
            else:  # leaving mid-turn: goodbye() says what still waits
                turn.cancel()
                await asyncio.gather(turn, return_exceptions=True)

    async def command(self, text: str) -> bool:
        """Run `/pending`, `/approve` or `/deny`; True when it decided a call."""
        name, _, rest = text.strip().partition(" ")
        name = name.lower()
        pending = await self.pending()
        if pending is None:
            return False
        if name == "/pending":
            self._list(pending)
            return False
        decided = await self._decide_by_command(name, rest, pending)
        if decided and not self._in_turn:
            # The turn that waited belongs to another client, or to an earlier session.
            await self._show_answer()
        return decided

    async def _decide_by_command(
        self, name: str, rest: str, pending: list[PendingApproval]
    ) -> bool:
        words = rest.split(maxsplit=1)
        approve = name == "/approve"
        by_id = {p.call_id: p for p in pending} | {
            p.approval_id: p for p in pending if p.approval_id
        }
        if words and words[0] in by_id:
            target, note = by_id[words[0]], words[1] if len(words) > 1 else ""
            return await self.decide(target.call_id, approve, note, target.tool, target)
        if len(pending) == 1 and (not words or not approve):
            # The only waiting call; what follows /deny is the note.
            first = pending[0]
            return await self.decide(first.call_id, approve, rest.strip(), first.tool, first)
        if words:
            # An old or mistyped call id: the workflow's validator says which it is.
            return await self.decide(words[0], approve, words[1] if len(words) > 1 else "")
        if not pending:
            self.terminal.error("Error: no tool call is waiting for approval")
        else:
            self.terminal.error(f"Error: say which call: {name} CALL_ID (/pending lists them)")
        return False

    async def _show_answer(self) -> None:
        """Follow the turn a decision let go on, and show its answer when it comes."""
        handle = self._handle()
        deadline = time.monotonic() + FOLLOW_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            try:
                status = await handle.query(AgentWorkflow.get_status, rpc_timeout=QUERY_TIMEOUT)
                if status.state == "waiting_for_approval":
                    await self.announce()  # another call of the turn waits now
                    return
                if status.state == "idle" and not status.queued_messages:
                    view = await handle.query(AgentWorkflow.get_history, rpc_timeout=QUERY_TIMEOUT)
                    break
            except Exception:  # a query fails in several ways; all mean "not now"
                continue
        else:
            self.terminal.say("The agent is still working on it; /history will show its answer.")
            return
        last = view.messages[-1] if view.messages else None
        if last is not None and last.role == "assistant" and last.content:
            self.terminal.say(indent_answer("Agent: ", last.content))

    async def decide(
        self,
        call_id: str,
        approve: bool,
        note: str,
        tool: str = "",
        pending: PendingApproval | None = None,
    ) -> bool:
        """Send one decision; True when the workflow recorded it."""
        decision = ToolDecision(call_id=call_id, approve=approve, note=note)
        update_id = None
        if pending is not None and pending.approval_id:
            # It names exactly the call shown; sent again, the same Update id is answered once.
            decision.approval_id, decision.digest = pending.approval_id, pending.digest
            update_id = f"decision-{pending.approval_id}-{'approve' if approve else 'deny'}"
        try:
            result = await self._handle().execute_update(
                AgentWorkflow.decide_tool_call, decision, id=update_id, rpc_timeout=DECISION_TIMEOUT
            )
        except WorkflowUpdateFailedError as err:
            self.terminal.error(f"Error: {failure_message(err.cause)}")
            return False
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
            self.terminal.error(
                f"Error: the decision on {call_id} was not confirmed "
                f"({one_line(failure_message(err), 120)}); /pending shows whether it still waits"
            )
            return False
        tool = result.tool or tool
        if result.approved:
            self.terminal.say(f"Approved: {tool} runs now.")
        else:
            self.terminal.say(f"Denied: {tool} will not run; the agent is told why.")
        return True

    async def announce(self) -> None:
        """Say which calls wait for approval (when the chat resumes a conversation)."""
        pending = await self.pending(quiet=True)
        if pending:
            self._list(pending)

    async def pending(self, quiet: bool = False) -> list[PendingApproval] | None:
        """The calls waiting for approval, or None (after saying why) when the query fails."""
        try:
            view = await self._handle().query(
                AgentWorkflow.get_pending_approvals, rpc_timeout=QUERY_TIMEOUT
            )
        except Exception as err:  # no worker, a server restart: the chat goes on
            if not quiet:
                self.terminal.error(
                    "Error: cannot read the tool calls waiting for approval: "
                    f"{one_line(failure_message(err), 160)} (is the orchestrator worker running?)"
                )
            return None
        return view.calls

    async def next_line(self, prompt: str) -> str | None:
        """The chat's next line: a held one first, then what the user types (None at the end)."""
        if self.held_lines:
            return self.held_lines.pop(0)
        while True:
            line = await self.terminal.read_line(prompt)
            abandoned, self._abandoned_question = self._abandoned_question, False
            text = (line or "").strip()
            if not (abandoned and (text.lower() in _YES or _NO.fullmatch(text))):
                return line
            # A y/n typed after its question was settled elsewhere must not become a message.
            self.terminal.error("That answer came too late: the call was no longer waiting.")

    def goodbye(self) -> None:
        """When leaving mid-question: how the waiting call can still be decided."""
        if self._waiting is not None:
            pending = self._waiting
            self.terminal.say(
                f"{pending.tool} ({pending.call_id}) still waits for approval until "
                f"{deadline(pending)}: resume and {how_to_decide(pending)}."
            )

    async def _next_question(self, turn: asyncio.Future[str]) -> PendingApproval | None:
        """The next call that waits and was not asked about yet; None once the turn is over."""
        poll = POLL_SECONDS if self.terminal.interactive else PLAIN_POLL_SECONDS
        while not turn.done():
            for pending in await self.pending(quiet=True) or []:
                if (pending.call_id, pending.asked_at) not in self._asked:
                    return pending
            await asyncio.wait({turn}, timeout=poll)
        return None

    async def _ask(self, pending: PendingApproval, turn: asyncio.Future[str]) -> None:
        """Show `pending` and read answers until it is decided, here or elsewhere."""
        self._asked.add((pending.call_id, pending.asked_at))
        self._waiting = pending
        self._show(pending)
        if self._input_closed:
            return
        while True:
            prompt = question(pending) if self.terminal.interactive else ""
            read = asyncio.ensure_future(self.terminal.read_line(prompt))
            gone = asyncio.ensure_future(self._until_settled(pending.call_id, turn))
            await asyncio.wait({read, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                # The terminal keeps the read going: the next line goes to the chat's prompt.
                read.cancel()
                gone.cancel()
                self._abandoned_question, self._waiting = True, None
                self.terminal.say(
                    f"{pending.tool} ({pending.call_id}) no longer waits: "
                    "it was decided elsewhere, or timed out."
                )
                return
            gone.cancel()
            line = read.result()
            if line is None and self.terminal.interactive:
                raise LeaveChat  # Ctrl-D leaves, as it does at the chat's own prompt
            if line is None:
                self._input_closed = True
                self.terminal.error(
                    f"End of input: the agent waits for a decision on {pending.call_id} from "
                    "another client (or `temporal workflow update execute --name "
                    "decide_tool_call`), or counts it as denied at "
                    f"{deadline(pending)}."
                )
                return
            if await self._answer(pending, line):
                self._waiting = None
                return

    async def _answer(self, pending: PendingApproval, line: str) -> bool:
        """Act on one line typed while `pending` waits; True when the question is settled."""
        text = line.strip()
        interactive = self.terminal.interactive
        if text.lower() in _YES:
            return await self.decide(pending.call_id, True, "", pending.tool, pending)
        if (no := _NO.fullmatch(text)) and (interactive or not no.group("note")):
            note = no.group("note") or ""
            return await self.decide(pending.call_id, False, note, pending.tool, pending)
        if not text and interactive:  # [y/N]: Enter alone is no
            return await self.decide(pending.call_id, False, "", pending.tool, pending)
        if text.lower() in self._quit_words:
            raise LeaveChat
        if text.startswith("/"):
            name = text.split()[0].lower()
            if name in ("/approve", "/deny"):
                await self.command(text)
                waiting = await self.pending(quiet=True)
                return waiting is not None and pending.call_id not in {p.call_id for p in waiting}
            if name in ("/new", "/end"):
                self.terminal.error(
                    f"Error: {name} has to wait: {pending.tool} waits for your decision "
                    f"({how_to_decide(pending)})"
                )
            else:
                await self._run_command(text)
            return False
        if not text:
            return False
        if interactive:
            self.terminal.error("Please answer y or n (n may be followed by a note for the agent).")
        else:
            self.held_lines.append(line)
            self.terminal.error(
                f"(held until the agent answers: {pending.tool} waits for {how_to_decide(pending)})"
            )
        return False

    async def _until_settled(self, call_id: str, turn: asyncio.Future[str]) -> None:
        """Return once `call_id` no longer waits (decided elsewhere, timed out, turn over)."""
        poll = POLL_SECONDS if self.terminal.interactive else PLAIN_POLL_SECONDS
        while not turn.done():
            await asyncio.wait({turn}, timeout=poll)
            pending = await self.pending(quiet=True)
            if pending is not None and call_id not in {p.call_id for p in pending}:
                return

    def _show(self, pending: PendingApproval) -> None:
        self.terminal.say(f"Approval needed: {describe_call(pending.tool, pending.arguments)}")
        expires = deadline(pending)
        if self.terminal.interactive:
            self.terminal.say(f"  (call {pending.call_id}; counts as denied at {expires})")
        else:
            self.terminal.say(
                f"  call {pending.call_id}: {how_to_decide(pending)}; counts as denied at {expires}"
            )

    def _list(self, pending: list[PendingApproval]) -> None:
        if not pending:
            self.terminal.say("No tool call is waiting for approval.")
            return
        self.terminal.say(f"Waiting for approval ({len(pending)}):")
        for call in pending:
            self.terminal.say(f"  {call.call_id}: {describe_call(call.tool, call.arguments)}")
            self.terminal.say(f"    {how_to_decide(call)}; counts as denied at {deadline(call)}")

"""The chat's side of tool approval: the question it asks, the decision it sends, the commands.

While a turn runs, the turn's loop (`app.cli.chat.turn`) learns from the conversation's stream
that a call waits (`ApprovalRequested`) and that its wait ended (`ApprovalDecided`), and asks
`Allow create_jira_issue(project=PROJ, ...)? [y/N]` on a terminal; with piped input it reads the
next lines, so `/approve CALL_ID` and `/deny CALL_ID [note]` decide. These commands (and
`/pending`, which reads `get_pending_approvals`) also work between turns, so a second client can
decide; so can `temporal workflow update execute --name decide_tool_call`. A decision names what
the person was shown (the workflow's approval id and the call's digest) and carries an Update id
of its own, the same when the same decision is sent again, so a retry never decides twice.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import (
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from app.agent.models import AgentResult
from app.agent.stream.events import ApprovalRequested
from app.agent.tools.approvals import PendingApproval, ToolDecision, call_digest, describe_call
from app.agent.workflow import AgentWorkflow
from app.cli.chat.live import QUERY_TIMEOUT
from app.cli.chat.terminal import Terminal
from app.core.connection import one_line
from app.core.errors import failure_message

APPROVAL_COMMANDS = ("/approve", "/deny", "/pending")
APPROVAL_HELP = """Tools that change things wait for your approval:
  y, or n [note]          answer the question the chat asks (on a terminal)
  /pending                list the tool calls that wait
  /approve [CALL_ID]      let one run (CALL_ID may be left out when only one waits)
  /deny [CALL_ID] [note]  refuse it; the agent reads the note"""
DECISION_TIMEOUT = timedelta(seconds=30)
PROMPT_ARGUMENTS_LIMIT = 60
YES = {"y", "yes"}
NO = re.compile(r"(?:n|no)(?:[\s:,]+(?P<note>.+))?", re.I | re.S)

Handle = WorkflowHandle[AgentWorkflow, AgentResult]


class LeaveChat(Exception):
    """The user asked to leave while a tool call was waiting for approval."""


@dataclass
class Question:
    """A tool call waiting for a decision, as the chat shows it and decides it."""

    call_id: str
    tool: str
    arguments: dict[str, Any]
    approval_id: str = ""
    digest: str = ""
    expires_at: datetime | None = None

    @classmethod
    def of(cls, pending: PendingApproval) -> Question:
        """The question for a call that `get_pending_approvals` lists."""
        return cls(
            pending.call_id,
            pending.tool,
            pending.arguments,
            pending.approval_id,
            pending.digest,
            pending.expires_at,
        )

    @classmethod
    def requested(cls, event: ApprovalRequested, pending: list[PendingApproval]) -> Question:
        """The question for a stream's `ApprovalRequested`, with the call id and the deadline
        from the pending calls (`pending`) when they list it."""
        for call in pending:
            if call.approval_id == event.approval_id or call.call_id == event.approval_id:
                return cls.of(call).with_ids(event)
        try:
            arguments = json.loads(event.arguments)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            arguments = {"arguments": event.arguments}
        return cls(event.approval_id, event.tool, arguments, event.approval_id, event.digest)

    def with_ids(self, event: ApprovalRequested) -> Question:
        self.approval_id, self.digest = event.approval_id, event.digest
        return self

    def is_for(self, approval_id: str) -> bool:
        """Whether `approval_id` names this call."""
        return approval_id in (self.approval_id, self.call_id)


def question(pending: Question) -> str:
    """The y/N question for one call, as the terminal asks it."""
    call = describe_call(pending.tool, pending.arguments, PROMPT_ARGUMENTS_LIMIT)
    return f"Allow {call}? [y/N] "


def deadline(pending: Question | PendingApproval) -> str:
    """When `pending` counts as denied, in the user's local time."""
    if pending.expires_at is None:
        return "its deadline"
    return f"{pending.expires_at.astimezone():%H:%M:%S %Z}"


def how_to_decide(pending: Question | PendingApproval) -> str:
    """The commands that decide `pending`."""
    return f"/approve {pending.call_id} or /deny {pending.call_id} [note]"


def decision_update_id(decision: ToolDecision) -> str:
    """The Update id of a decision: the same decision sent again gets the same id, so the
    server answers a retry with the first result instead of deciding twice."""
    content = json.dumps([decision.approval_id, decision.call_id, decision.approve, decision.note])
    return f"decision-{hashlib.sha256(content.encode()).hexdigest()[:20]}"


class ApprovalDesk:
    """Sends decisions, runs `/pending`, `/approve` and `/deny`, and shows the calls that wait."""

    def __init__(self, terminal: Terminal, handle: Callable[[], Handle]) -> None:
        self.terminal = terminal
        self._handle = handle
        # Piped lines that arrived while a call waited: the chat sends them after the turn.
        self.held_lines: list[str] = []
        self.input_closed = False
        self.abandoned_question = False
        # The call the chat asked about and nobody has decided yet (said on leaving).
        self.waiting: Question | None = None

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
        return await self._decide_by_command(name, rest, [Question.of(p) for p in pending])

    async def _decide_by_command(self, name: str, rest: str, pending: list[Question]) -> bool:
        words = rest.split(maxsplit=1)
        approve = name == "/approve"
        by_id = {p.call_id: p for p in pending} | {
            p.approval_id: p for p in pending if p.approval_id
        }
        if words and words[0] in by_id:
            return await self.decide(by_id[words[0]], approve, words[1] if len(words) > 1 else "")
        if len(pending) == 1 and (not words or not approve):
            # The only waiting call; what follows /deny is the note.
            return await self.decide(pending[0], approve, rest.strip())
        if words:
            # An old or mistyped call id: the workflow's validator says which it is.
            unknown = Question(words[0], "", {})
            return await self.decide(unknown, approve, words[1] if len(words) > 1 else "")
        if not pending:
            self.terminal.error("Error: no tool call is waiting for approval")
        else:
            self.terminal.error(f"Error: say which call: {name} CALL_ID (/pending lists them)")
        return False

    async def decide(self, call: Question, approve: bool, note: str) -> bool:
        """Send one decision on what was shown; True when the workflow recorded it."""
        digest = call.digest or (call_digest(call.tool, call.arguments) if call.tool else "")
        decision = ToolDecision(
            call_id=call.call_id,
            approve=approve,
            note=note,
            approval_id=call.approval_id,
            digest=digest,
        )
        try:
            result = await self._handle().execute_update(
                AgentWorkflow.decide_tool_call,
                decision,
                id=decision_update_id(decision),
                rpc_timeout=DECISION_TIMEOUT,
            )
        except WorkflowUpdateFailedError as err:
            self.terminal.error(f"Error: {failure_message(err.cause)}")
            return False
        except (RPCError, WorkflowUpdateRPCTimeoutOrCancelledError) as err:
            self.terminal.error(
                f"Error: the decision on {call.call_id} was not confirmed "
                f"({one_line(failure_message(err), 120)}); /pending shows whether it still waits"
            )
            return False
        tool = result.tool or call.tool
        if self.waiting is not None and self.waiting.call_id == result.call_id:
            self.waiting = None
        if result.approved:
            self.terminal.say(f"Approved: {tool} runs now.")
        else:
            self.terminal.say(f"Denied: {tool} will not run; the agent is told why.")
        return True

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
            abandoned, self.abandoned_question = self.abandoned_question, False
            if not (abandoned and is_yes_or_no(line or "")):
                return line
            # A y/n typed after its question was settled elsewhere must not become a message.
            self.terminal.error("That answer came too late: the call was no longer waiting.")

    def goodbye(self) -> None:
        """When leaving mid-question: how the waiting call can still be decided."""
        if self.waiting is not None:
            pending = self.waiting
            self.terminal.say(
                f"{pending.tool} ({pending.call_id}) still waits for approval until "
                f"{deadline(pending)}: resume and {how_to_decide(pending)}."
            )

    def show(self, pending: Question) -> None:
        """Say that `pending` waits, and how to decide it."""
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


def is_yes_or_no(line: str) -> bool:
    """Whether `line` answers a y/N question."""
    text = line.strip()
    return text.lower() in YES or NO.fullmatch(text) is not None

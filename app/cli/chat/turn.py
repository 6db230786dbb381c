"""One turn of the chat as one small state machine: every happening is an event on one queue.

While a turn runs, several things can happen at once: the conversation's stream says what the
agent does (`follow_turn`), the message is accepted and later answered (the `send_message`
Update), a tool call waits for approval and its wait ends (decided here, elsewhere, or timed
out), the user types an answer, a long silence needs explaining, the demo reports a worker that
died. Each is put on `TurnMachine.inbox` by the task that noticed it, and `TurnMachine.run`
handles them one at a time; it is the only code that draws while the turn runs. So a question
settled elsewhere erases its own prompt before anything is printed, nothing draws over a
prompt, and the turn's last stream events (a quick tool's lines, the step bound's last result)
are shown before its answer. Ctrl-C cancels the loop, which withdraws the prompt and stops the
live view on its way out.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from app.agent.models import AgentStatus
from app.agent.stream.events import AgentEvent, ApprovalDecided, ApprovalRequested, TurnAnswered
from app.agent.workflow import AgentWorkflow
from app.cli.chat.approvals import (
    NO,
    YES,
    LeaveChat,
    Question,
    deadline,
    how_to_decide,
    question,
)
from app.cli.chat.live import follow_turn, wait_briefly
from app.cli.chat.retries import RunFull, await_answer, deliver
from app.cli.chat.silence import TurnInFlight, watch_silence
from app.cli.chat.terminal import Notice
from app.cli.chat.turn_events import (
    Accepted,
    Answered,
    CaughtUp,
    Event,
    Failed,
    Hint,
    Streamed,
    StreamTail,
    Typed,
    WaitsUnannounced,
)

if TYPE_CHECKING:
    from app.cli.chat.session import ChatSession

# How long a message waits for the stream's first poll to leave (it leaves at once, unless the
# server does not answer the offset query).
FIRST_POLL_WAIT_SECONDS = 1.0
# After the answer, how long the stream may take to deliver the turn's last events.
STREAM_TAIL_SECONDS = 3.0
OUTCOMES = {
    "approved": "it was approved elsewhere",
    "denied": "it was denied elsewhere",
    "timed_out": "nobody decided in time, so it counts as denied",
}


class TurnMachine:
    """One turn, from sending its message (or joining it) to its answer."""

    def __init__(
        self,
        session: ChatSession,
        text: str | None,
        update_id: str,
        from_offset: int,
        turn: TurnInFlight,
    ) -> None:
        self.session = session
        self.terminal = session.terminal
        self.desk = session.approvals
        self.text = text
        self.update_id = update_id
        self.from_offset = from_offset
        self.turn = turn
        self.inbox: asyncio.Queue[Event] = asyncio.Queue()
        self.answer: str | None = None
        self.stream_answered = False
        self.caught_up = False
        # Calls the stream says wait, not asked about yet (oldest first).
        self.requested: dict[str, ApprovalRequested] = {}
        self.decided: set[str] = set()
        self.approval_events = False
        # Calls `get_pending_approvals` lists when joining a turn whose stream says nothing of
        # approvals (a workflow older than the approval events).
        self.fallback: list[Question] = []
        self.fallback_seen: set[str] = set()
        self.asking: Question | None = None
        self.asked = 0
        self.reading: asyncio.Task[str | None] | None = None
        self.following: asyncio.Task[None] | None = None
        # Set as the stream's first poll leaves: the message is sent after it, because the
        # workflow streams text only to a conversation someone watches, and decides so when it
        # plans.
        self.polling = asyncio.Event()

    def post(self, event: Event) -> None:
        """Hand the loop an event (from any task of this event loop)."""
        self.inbox.put_nowait(event)

    async def run(self) -> str:
        """Handle events until the turn's answer; returns it (a `ChatError` if it failed)."""
        self.terminal.inbox = self.inbox  # the demo's notices come through here
        self.terminal.begin_turn()
        self.following = asyncio.create_task(self._follow())
        tasks = [
            asyncio.create_task(self._send()),
            asyncio.create_task(self._watch()),
            self.following,
        ]
        try:
            while True:
                if await self._handle(await self.inbox.get()):
                    assert self.answer is not None
                    return self.answer
        finally:
            self.terminal.inbox = None
            if self.reading is not None:
                await self.terminal.withdraw(self.reading)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.terminal.end_turn(None)

    async def _handle(self, event: Event) -> bool:
        """Act on one event; True once the turn is over and its answer can be shown."""
        if isinstance(event, Streamed):
            return await self._streamed(event.event)
        if isinstance(event, CaughtUp):
            self.caught_up = True
            if self.text is None and not self.approval_events:
                # Joining a turn of a workflow that does not publish approval events: ask it.
                await self._ask_the_workflow()
            await self._next_question()
        elif isinstance(event, WaitsUnannounced):
            if not self.approval_events:
                await self._ask_the_workflow()
                await self._next_question()
        elif isinstance(event, Accepted):
            self.turn.accepted = True
            if self.terminal.turn is not None:
                self.terminal.turn.doing = "waiting for the agent"
        elif isinstance(event, Answered):
            self.answer = event.text
            if self.asking is not None:  # the turn is over: nothing waits any more
                await self._withdraw()
                self.asking = self.desk.waiting = None
            if not self.terminal.live or self.stream_answered or self._stream_gone():
                return True
            # The stream is a little behind the Update's result: let it show the last lines.
            asyncio.get_running_loop().call_later(STREAM_TAIL_SECONDS, self.post, StreamTail())
        elif isinstance(event, StreamTail):
            return True
        elif isinstance(event, Failed):
            raise event.error
        elif isinstance(event, Typed):
            if self.asking is not None and event.asked == self.asked:
                self.reading = None
                await self._typed(self.asking, event.line)
        elif isinstance(event, Hint | Notice):
            self.terminal.error(event.text)
        return False

    async def _streamed(self, event: AgentEvent) -> bool:
        self.turn.last_event = time.monotonic()
        self.terminal.show(event)
        if isinstance(event, ApprovalRequested | ApprovalDecided):
            self.approval_events = True
        if isinstance(event, ApprovalRequested):
            self.requested[event.approval_id] = event
            await self._next_question()
        elif isinstance(event, ApprovalDecided):
            self.decided.add(event.approval_id)
            self.requested.pop(event.approval_id, None)
            if self.asking is not None and self.asking.is_for(event.approval_id):
                await self._settled_elsewhere(self.asking, event)
        elif isinstance(event, TurnAnswered):
            self.stream_answered = True
            return self.answer is not None
        return False

    # --- questions -------------------------------------------------------------------------

    async def _next_question(self) -> None:
        """Ask about the oldest call that waits, unless one is being asked about."""
        if self.asking is not None or not self.caught_up:
            return
        while self.requested:
            event = self.requested.pop(next(iter(self.requested)))
            # One query for what the event does not carry: the call id and the deadline.
            pending = await self.desk.pending(quiet=True)
            if event.approval_id in self.decided:
                continue
            call = Question.requested(event, pending or [])
            listed = pending is None or any(call.call_id == p.call_id for p in pending)
            if listed:
                self._ask(call)
                return
        if self.fallback:
            self._ask(self.fallback.pop(0))
            return
        self.terminal.resume_display()

    async def _ask_the_workflow(self) -> None:
        """Queue the calls `get_pending_approvals` lists that were not asked about yet."""
        for call in await self.desk.pending(quiet=True) or []:
            if call.call_id not in self.fallback_seen:
                self.fallback_seen.add(call.call_id)
                self.fallback.append(Question.of(call))

    def _ask(self, call: Question) -> None:
        self.asking = self.desk.waiting = call
        self.desk.show(call)
        if self.desk.input_closed:
            self.asking = None
            return
        self._read()

    def _read(self) -> None:
        assert self.asking is not None
        self.asked += 1
        asked = self.asked
        prompt = question(self.asking) if self.terminal.interactive else ""
        self.reading = self.terminal.ask(prompt)

        def typed(reading: asyncio.Task[str | None]) -> None:
            if not reading.cancelled() and reading.exception() is None:
                self.post(Typed(reading.result(), asked))

        self.reading.add_done_callback(typed)

    async def _withdraw(self) -> None:
        if self.reading is not None:
            self.asked += 1  # whatever it returns now answers nothing
            reading, self.reading = self.reading, None
            await self.terminal.withdraw(reading)
            self.desk.abandoned_question = not self.terminal.interactive

    async def _settled_elsewhere(self, call: Question, event: ApprovalDecided) -> None:
        """The call's wait ended without this chat's decision: erase the question, say how."""
        await self._withdraw()
        self.asking = None
        if self.desk.waiting is call:
            self.desk.waiting = None
        outcome = OUTCOMES.get(event.outcome, event.outcome)
        self.terminal.say(f"{call.tool} ({call.call_id}) no longer waits: {outcome}.")
        await self._next_question()

    async def _typed(self, call: Question, line: str | None) -> None:
        """A line typed while `call` waits: a decision, a command, or something to hold."""
        if line is None and self.terminal.interactive:
            raise LeaveChat  # Ctrl-D leaves, as it does at the chat's own prompt
        if line is None:
            self.desk.input_closed = True
            self.asking = None
            self.terminal.error(
                f"End of input: the agent waits for a decision on {call.call_id} from another "
                f"client (or `uv run temporal workflow update execute --address "
                f"{self.session.address} --workflow-id {self.session.conversation_id} --name "
                f"decide_tool_call`), or counts it as denied at {deadline(call)}."
            )
            return
        if await self._answer(call, line):
            self.asking = None
            await self._next_question()
        elif self.asking is call:
            self._read()

    async def _answer(self, call: Question, line: str) -> bool:
        """Act on one line typed while `call` waits; True when the question is settled."""
        text = line.strip()
        interactive = self.terminal.interactive
        if text.lower() in YES:
            return await self.desk.decide(call, True, "")
        if (no := NO.fullmatch(text)) and (interactive or not no.group("note")):
            return await self.desk.decide(call, False, no.group("note") or "")
        if not text and interactive:  # [y/N]: Enter alone is no
            return await self.desk.decide(call, False, "")
        if text.lower() in self.session.quit_words:
            raise LeaveChat
        if text.startswith("/"):
            name = text.split()[0].lower()
            if name in ("/approve", "/deny"):
                await self.desk.command(text)
                waiting = await self.desk.pending(quiet=True)
                return waiting is not None and call.call_id not in {p.call_id for p in waiting}
            if name in ("/new", "/end"):
                self.terminal.error(
                    f"Error: {name} has to wait: {call.tool} waits for your decision "
                    f"({how_to_decide(call)})"
                )
            else:
                await self.session.command(text)
            return False
        if not text:
            return False
        if interactive:
            self.terminal.error("Please answer y or n (n may be followed by a note for the agent).")
        else:
            self.desk.held_lines.append(line)
            self.terminal.error(
                f"(held until the agent answers: {call.tool} waits for {how_to_decide(call)})"
            )
        return False

    # --- the tasks that feed the inbox -------------------------------------------------------

    async def _send(self) -> None:
        """Deliver the message (unless it runs already) and hand over the answer."""
        try:
            self.post(Answered(await self._answer_of_update()))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the loop raises it: one line, or the end of the chat
            self.post(Failed(err))

    async def _answer_of_update(self) -> str:
        handle = self.session.handle
        retries = self.session.retries(self._hint)
        while True:
            try:
                if self.text is None:  # accepted before this chat began: only its answer
                    update = handle.get_update_handle_for(
                        AgentWorkflow.send_message, self.update_id
                    )
                else:
                    await wait_briefly(self.polling.wait(), FIRST_POLL_WAIT_SECONDS)
                    update = await deliver(handle, self.text, self.update_id, retries)
                self.post(Accepted())
                return await await_answer(update, self.session.retries(self._hint))
            except RunFull as refusal:
                # Refused (a rejection is in no history), so the same id is new to the next
                # run, which our handle (no run id) reaches once this one continues as new, or
                # to this run once a waiting message is answered (`ConversationBusy`).
                self.turn.accepted = False
                await retries.after_refusal(refusal)

    async def _follow(self) -> None:
        await follow_turn(
            self.session.client,
            self.session.conversation_id,
            self.update_id,
            self.from_offset,
            lambda event: self.post(Streamed(event)),
            lambda: self.post(CaughtUp()),
            self.polling,
        )

    async def _watch(self) -> None:
        hint_after, slow_acceptance, status, server_answers, silent = self.session.silence_checks()

        async def checked_status() -> tuple[AgentStatus | None, str]:
            # The one status query of a quiet turn also tells whether a call waits unannounced.
            current, problem = await status()
            if current is not None and current.state == "waiting_for_approval":
                self.post(WaitsUnannounced())
            return current, problem

        await watch_silence(
            self.turn,
            self._hint,
            hint_after,
            slow_acceptance,
            checked_status,
            server_answers,
            silent,
        )

    def _hint(self, text: str) -> None:
        self.post(Hint(text))

    def _stream_gone(self) -> bool:
        return self.following is None or self.following.done()

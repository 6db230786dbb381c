"""The orchestrator: a durable, multi-turn agent loop as a Temporal workflow.

Each user message arrives as the Update `send_message` and runs one turn: a `while` loop that asks
the LLM for the next action (`plan_next_action`), runs the tools it asks for (`tools/`: local ones,
Nexus ones, MCP servers' listed once per run; several at once), feeds the results back, and stops
when the LLM answers or the turn reaches a bound. Turns run one at a time in arrival order. A full
run refuses new messages with `ConversationRunFull`, answers those it accepted, and continues as
new; senders retry with the same Update id, and recent answers are carried along so a retry never
runs twice. Approvals wait for `decide_tool_call`; costs are kept (`get_usage`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutType

with workflow.unsafe.imports_passed_through():
    from app.agent.answers import AnsweredMessages, busy_refusal
    from app.agent.conversation import history_page, plan_input_bytes, planner_window
    from app.agent.llm.activity import plan_next_action
    from app.agent.llm.client import worker_model
    from app.agent.llm.usage import ConversationUsage, TurnUsage, conversation_budget_refusal
    from app.agent.metrics import record_turn
    from app.agent.models import (
        AgentInput,
        AgentResult,
        AgentStatus,
        ConversationView,
        HistoryPage,
        Message,
        utf8_size,
    )
    from app.agent.stream.workflow_side import ConversationEvents, WorkflowStream
    from app.agent.tools.approvals import (
        Approvals,
        PendingApprovals,
        ToolDecision,
        ToolDecisionResult,
    )
    from app.agent.tools.runner import ToolRunner, TurnSpending, describe_call, timeout_type
    from app.core.errors import failure_message
    from app.core.names import AGENT_COST_USD, AGENT_TOKENS, AGENT_TURNS, AGENT_WORKFLOW_NAME
    from app.core.names import llm_task_queue as planning_queue

# The error type of the validator's refusal when a run is full; senders retry it (same Update id).
RUN_FULL = "ConversationRunFull"
# The error type of the validator's refusal when too many messages already wait for a turn.
CONVERSATION_BUSY = "ConversationBusy"


@dataclass(frozen=True)
class LLMFailure:
    """A planning call that failed for good, with the answer the user gets."""

    answer: str


@workflow.defn(name=AGENT_WORKFLOW_NAME)
class AgentWorkflow:
    """One conversation with the agent."""

    @workflow.init
    def __init__(self, input: AgentInput) -> None:
        self._config = input.config
        self._history: list[Message] = list(input.history)
        self._earlier_messages = input.earlier_messages
        self._first_message = input.first_message
        self._turns = input.turns_before_this_run
        self._accepted_this_run = 0
        self._pending_turns = 0
        self._ending = False
        self._draining = False
        self._answered = AnsweredMessages(input.answered, input.config)
        # asyncio.Lock is FIFO: messages that arrive during a turn wait for it, in order.
        self._turn_lock = asyncio.Lock()
        self._status = AgentStatus(turns=self._turns)
        # Live progress on a Workflow Stream (the SDK wants it built here, in @workflow.init).
        self._events = ConversationEvents(WorkflowStream(input.stream_state))
        self._approvals = Approvals(self._events)
        self._tools = ToolRunner(self._config, self._approvals, self._events)
        self._usage: ConversationUsage = input.usage
        self._turn_usage: TurnUsage | None = None  # the turn in progress
        self._turn_started = workflow.now()
        self._turn_spent = TurnSpending()  # the turn in progress, for its metrics and log line

    @workflow.run
    async def run(self, input: AgentInput) -> AgentResult:
        await workflow.wait_condition(lambda: self._ending or self._should_continue_as_new())
        # From here on the validator refuses new messages, so the queue drains; the turns already
        # accepted finish first, because their senders are waiting for the answers.
        self._draining = True
        await workflow.wait_condition(lambda: self._pending_turns == 0)
        # Stream subscribers are Update handlers too: release them, then let every handler end.
        self._events.detach()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not self._ending:
            # The stream's log goes along, within its budget (older events are dropped if not).
            self._events.keep_within(self._config.max_stream_state_bytes)
            carried = self._window()
            if plan_input_bytes(carried) > self._config.max_plan_input_bytes:
                # The window always holds the newest turn; one that grew too large to plan is
                # left behind, so the next run's input stays far below the payload limit.
                carried = []
            workflow.logger.info("Continuing as new after %d turns", self._accepted_this_run)
            workflow.continue_as_new(
                AgentInput(
                    history=carried,
                    config=self._config,
                    turns_before_this_run=self._turns,
                    earlier_messages=self._earlier_messages + len(self._history) - len(carried),
                    answered=self._answered.records(),
                    usage=self._usage,
                    stream_state=self._events.state(),
                    first_message=self._first_message,
                )
            )
        return AgentResult(turns=self._turns, messages=self._earlier_messages + len(self._history))

    @workflow.update
    async def send_message(self, message: str) -> str:
        """Run one turn for the user's message and return the agent's answer."""
        recorded = self._answered.for_this_update()
        if recorded is not None:
            # The same Update id was answered in an earlier run: answer it again, run nothing.
            return recorded
        self._accepted_this_run += 1
        self._pending_turns += 1
        self._status.queued_messages += 1
        try:
            async with self._turn_lock:
                self._status.queued_messages -= 1
                self._begin_turn_usage()
                self._events.turn_started(self._turns + 1)
                answer = await self._run_turn(message.strip())
                self._first_message = self._first_message or message.strip()[:1000]
                self._approvals.show_conversation(self._first_message, self._status.model)
                self._events.answered(answer, self._status.model)
                self._end_turn_usage()
        finally:  # a failed turn must not hold the run open: it drains down to zero
            self._pending_turns -= 1
        self._turns += 1
        self._status.turns = self._turns
        self._answered.remember_for_this_update(answer)
        return answer

    @send_message.validator
    def validate_message(self, message: str) -> None:
        """Reject a message before it is written to history."""
        if self._answered.for_this_update() is not None:
            return
        if self._ending:
            raise ValueError("this conversation has ended: start a new one")
        if not message.strip():
            raise ValueError("the message is empty")
        if len(message) > self._config.max_message_chars:
            raise ValueError(
                f"the message has {len(message):,} characters; "
                f"the limit is {self._config.max_message_chars:,}"
            )
        if self._pending_turns >= self._config.max_queued_messages:
            # Each waiting message holds one of the server's 10 Update slots: keep some free.
            raise busy_refusal(self._pending_turns, CONVERSATION_BUSY)
        if not self._has_room_for_a_turn():
            raise ApplicationError(
                "this conversation is moving to a fresh run (continue-as-new) after the messages "
                "already queued: send the message again in a moment, with the same Update id",
                type=RUN_FULL,
                non_retryable=True,
            )

    @workflow.update
    def decide_tool_call(self, decision: ToolDecision) -> ToolDecisionResult:
        """Approve or deny a tool call that waits for a person's decision."""
        return self._approvals.decide(decision)

    @decide_tool_call.validator
    def validate_decision(self, decision: ToolDecision) -> None:
        """Reject a decision on an unknown or already decided call before it enters history."""
        self._approvals.check(decision)

    @workflow.signal
    def end_conversation(self) -> None:
        """End the conversation once the turns already sent have been answered."""
        self._ending = True

    @workflow.query
    def get_history(self) -> ConversationView:
        """The newest messages, within 1 MB (older ones, and earlier runs', are counted)."""
        return self.get_history_page(HistoryPage())

    @workflow.query
    def get_history_page(self, page: HistoryPage) -> ConversationView:
        """The newest messages before message number `page.before`, within `page.max_bytes`."""
        return history_page(self._history, self._earlier_messages, page)

    @workflow.query
    def get_status(self) -> AgentStatus:
        """What the agent is doing right now, and the model of the worker that answers."""
        # Read from the worker process, not workflow state: queries never enter history.
        status = self._status.model_copy(update={"worker_model": worker_model()})
        return self._events.shown_in(self._approvals.shown_in(status))

    @workflow.query
    def get_pending_approvals(self) -> PendingApprovals:
        """The tool calls waiting for a person's decision."""
        return PendingApprovals(calls=self._approvals.pending)

    @workflow.query
    def get_usage(self) -> ConversationUsage:
        """Tokens and cost: the recent turns one by one, and the whole conversation so far."""
        return self._usage

    def _window(self) -> list[Message]:
        config = self._config
        return planner_window(
            self._history,
            config.planner_window_chars,
            config.planner_window_messages,
            config.max_plan_input_bytes,
        )

    # ---- The run's bounds, and answers carried across runs ----

    def _has_room_for_a_turn(self) -> bool:
        """Whether this run can take one more turn and stay within all of its bounds."""
        config = self._config
        info = workflow.info()
        if self._accepted_this_run == 0:
            # Every run takes at least one turn, whatever the budgets: no continue-as-new loop.
            return not self._draining
        # What the accepted turns still to finish, and one more, may add at most; and the input
        # of the next run (the planner's window and the answers on record).
        turns_to_come = self._pending_turns + 1
        # The stream's log is carried too, cut to its own budget before the next run starts.
        carried = (
            config.max_plan_input_bytes
            + config.remembered_answers_bytes
            + config.max_stream_state_bytes
        )
        return not (
            self._draining
            or self._accepted_this_run >= config.max_turns_per_run
            or info.get_current_history_size() + turns_to_come * config.max_turn_bytes + carried
            > config.max_history_bytes_per_run
            or info.get_current_history_length() + turns_to_come * self._events_per_turn()
            > config.max_history_events_per_run
        )

    def _should_continue_as_new(self) -> bool:
        """Whether to drain and continue as new: the run is full, or the server suggests it."""
        # Never a refusal: seen first in a speculative task, a refusal rolled it back (stuck).
        return not self._has_room_for_a_turn() or workflow.info().is_continue_as_new_suggested()

    def _events_per_turn(self) -> int:
        """A bound on the events of one turn: per step, planning, tools and tasks; the Update's."""
        config = self._config
        return 2 + config.max_steps_per_turn * (12 + 3 * config.max_tool_calls_per_step)

    # ---- One turn ----

    async def _run_turn(self, text: str) -> str:
        """The agent loop for one user message: plan, act, repeat until there is an answer."""
        start = len(self._history)
        self._history.append(Message.user(text))
        spent = self._turn_spent = TurnSpending(bytes=utf8_size(text), turn=self._turns + 1)
        answer: str | None = None
        while answer is None:
            window = self._window()
            size = plan_input_bytes(window)
            stop = self._turn_limit_reached(spent, size)
            if stop is not None:
                self._history.append(Message.assistant(stop))
                answer = stop
            else:
                spent.steps += 1
                spent.bytes += size
                self._events.planning_step(spent.steps)
                answer = await self._step(start, window, spent)
        self._set_status("idle")
        return answer

    async def _step(self, start: int, window: list[Message], spent: TurnSpending) -> str | None:
        """One planning call and what follows: the answer, or None once its tools have run."""
        reply = await self._plan_next_action(window, spent.steps)
        if isinstance(reply, LLMFailure):
            return self._end_failed_turn(start, reply.answer)
        self._history.append(reply)
        if not reply.tool_calls:
            return reply.content or ""
        run, _ = self._tools.split(reply.tool_calls, spent)
        self._set_status("calling_tools", f"calling {', '.join(map(describe_call, run))}")
        self._history.extend(await self._tools.run(reply.tool_calls, spent))
        return None

    def _turn_limit_reached(self, spent: TurnSpending, next_plan_bytes: int) -> str | None:
        """Why the turn must stop before planning again, as the answer the user reads, or None."""
        config = self._config
        if spent.steps >= config.max_steps_per_turn:
            return (
                f"I stopped after {spent.steps} steps without reaching an answer. "
                "Try asking for less at once, or rephrase the request."
            )
        if (
            next_plan_bytes > config.max_plan_input_bytes
            or spent.bytes + next_plan_bytes > config.max_turn_bytes
        ):
            return (
                f"I stopped: this turn grew too large to go on (its next planning step would "
                f"carry {next_plan_bytes:,} bytes, and the turn has used {spent.bytes:,} bytes of "
                f"its {config.max_turn_bytes:,}-byte budget). Try asking for less at once."
            )
        return None

    def _end_failed_turn(self, start: int, answer: str) -> str:
        """End a turn whose planning call failed: its partial steps are dropped, and the user
        message and the answer are kept for the user but never sent to the LLM again."""
        user_message = self._history[start].model_copy(update={"skip_in_planning": True})
        failure = Message.assistant(answer).model_copy(update={"skip_in_planning": True})
        self._history[start:] = [user_message, failure]
        return answer

    async def _plan_next_action(self, window: list[Message], step: int = 1) -> Message | LLMFailure:
        config = self._config
        # This conversation's own budget (AgentConfig); the worker checks the operator's.
        spent = self._usage.total
        refusal = conversation_budget_refusal(spent, config.max_total_tokens, config.max_cost_usd)
        if refusal is not None:
            return Message.assistant(refusal)
        self._set_status("thinking")
        tools = await self._tools.mcp.ready(self._turns)  # listed once per run
        try:
            plan = await workflow.execute_activity(
                plan_next_action,
                self._events.plan_input(window, spent, tools),
                # Core's replay check compares an activity's id and type, not its task queue.
                task_queue=planning_queue(workflow.info().task_queue),
                summary=f"plan step {step}",
                start_to_close_timeout=timedelta(seconds=config.llm_timeout_seconds),
                # The whole planning step, retries included, ends within this deadline.
                schedule_to_close_timeout=timedelta(seconds=config.llm_deadline_seconds),
                heartbeat_timeout=timedelta(seconds=config.llm_heartbeat_timeout_seconds),
                retry_policy=config.llm_retry_policy(),
            )
        except ActivityError as err:
            # The turn ends with an explanation; the conversation stays usable.
            workflow.logger.warning("plan_next_action failed: %s", failure_message(err))
            self._usage.count_failure(err.cause, self._turn_usage)
            reason = failure_message(err)
            if (
                err.retry_state == RetryState.TIMEOUT
                or timeout_type(err) == TimeoutType.SCHEDULE_TO_CLOSE
            ):
                reason = (
                    f"it did not answer within {config.llm_deadline_seconds:g} seconds "
                    f"(last error: {reason})"
                )
            return LLMFailure(
                f"Sorry, I could not get an answer from the language model: {reason}."
            )
        self._status.model = plan.model
        if not plan.budget_exhausted:
            # Failed attempts that reached the provider are paid for too.
            self._usage.count([*plan.failed_usage, plan.usage], self._turn_usage)
        return plan.message

    # ---- Usage and budget ----

    def _begin_turn_usage(self) -> None:
        update = workflow.current_update_info()
        self._turn_usage = TurnUsage(turn=self._turns + 1, update_id=update.id if update else None)
        self._turn_started = workflow.now()

    def _end_turn_usage(self) -> None:
        """Record the finished turn and publish the totals as search attributes."""
        turn, self._turn_usage = self._turn_usage, None
        assert turn is not None
        # Workflow time (deterministic): from the turn's start to its answer.
        turn.seconds = round((workflow.now() - self._turn_started).total_seconds(), 3)
        self._usage.record(turn)
        record_turn(turn, self._turn_spent.steps, self._turn_spent.tools)
        total = self._usage.total
        workflow.upsert_search_attributes(
            [
                AGENT_TURNS.value_set(turn.turn),
                AGENT_TOKENS.value_set(total.total_tokens),
                AGENT_COST_USD.value_set(total.cost_usd),
            ]
        )

    def _set_status(self, state: str, detail: str = "") -> None:
        self._status.state = state  # type: ignore[assignment]
        self._status.detail = detail or {"thinking": "thinking", "idle": ""}.get(state, "")

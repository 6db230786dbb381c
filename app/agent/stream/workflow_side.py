"""The conversation's Workflow Stream, as the agent workflow publishes to it.

`ConversationEvents` owns the workflow's `WorkflowStream` (experimental in temporalio 1.35): it
publishes the turn's progress events (`app.agent.stream.events`) on one topic, keeps the log short
(at the start of each turn it drops the events of turns before the previous one, so the log and the
state carried across continue-as-new do not grow with the conversation), and hands its state to the
next run. Clients subscribe with `WorkflowStreamClient`; the LLM activity publishes text, but
only while someone watches: the stream's poll Update is wrapped to note when subscribers poll
(`watched`), so a conversation that nobody follows costs no text signals and no workflow tasks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.contrib.workflow_streams import PollInput, WorkflowStream, WorkflowStreamState
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from app.agent.llm.usage import UsageTotals
    from app.agent.models import AgentStatus, Message, PlanInput
    from app.agent.stream.events import (
        EVENT_TYPE,
        EVENTS_TOPIC,
        PlanningStep,
        ToolCallFinished,
        ToolCallStarted,
        TurnAnswered,
        TurnStarted,
    )

# The stream's long-poll Update: a public wire name (its client sends it by this name).
POLL_UPDATE = "__temporal_workflow_stream_poll"
# A subscriber that polled this recently still watches: it polls again within the stream client's
# 100 ms cool-down after each batch, and a long poll stays open while nothing is published.
WATCHER_GRACE = timedelta(seconds=10)


class ConversationEvents:
    """The workflow side of the conversation's event stream."""

    def __init__(self, prior_state: WorkflowStreamState | None) -> None:
        # WorkflowStream registers its handlers and insists on being built from an `__init__`.
        self._stream = WorkflowStream(prior_state)
        self._topic = self._stream.topic(EVENTS_TOPIC, type=EVENT_TYPE)
        self.turn_id = ""
        # Where the previous turn's events start: the log keeps that turn and the current one.
        self._previous_turn_offset = self._offset()
        # Where the turn in progress starts (its TurnStarted event); None between turns.
        self.turn_offset: int | None = None
        self._open_polls = 0
        self._last_poll: datetime | None = None
        self._detached = False
        self._watch_polls()

    def _watch_polls(self) -> None:
        """Wrap the stream's poll Update to count its subscribers (it changes no command)."""
        poll: Callable[[PollInput], Awaitable[Any]] | None = workflow.get_update_handler(
            POLL_UPDATE
        )
        if poll is None:
            return

        async def watched_poll(payload: PollInput) -> Any:
            self._open_polls += 1
            self._last_poll = workflow.now()
            try:
                return await poll(payload)
            finally:
                self._open_polls -= 1
                self._last_poll = workflow.now()

        def validate_poll(payload: PollInput) -> None:
            # As the stream's own validator: subscribers retry this type on the next run.
            if self._detached:
                raise ApplicationError(
                    "Workflow pollers are detached for continue-as-new", type="StreamDraining"
                )

        workflow.set_update_handler(POLL_UPDATE, watched_poll, validator=validate_poll)

    @property
    def watched(self) -> bool:
        """Whether a client follows the stream: a poll is open, or one ended moments ago."""
        if self._open_polls:
            return True
        return self._last_poll is not None and workflow.now() - self._last_poll < WATCHER_GRACE

    def turn_started(self, turn: int) -> None:
        """A new turn, named by its `send_message` Update id; older turns leave the log."""
        update = workflow.current_update_info()
        self.turn_id = update.id if update else f"turn-{turn}"
        self._stream.truncate(self._previous_turn_offset)
        self._previous_turn_offset = self.turn_offset = self._offset()
        self._topic.publish(TurnStarted(turn_id=self.turn_id, turn=turn))

    def planning_step(self, step: int) -> None:
        self._topic.publish(PlanningStep(turn_id=self.turn_id, step=step))

    def tool_started(self, call_id: str, tool: str, arguments: str, endpoint: str | None) -> None:
        self._topic.publish(
            ToolCallStarted(
                turn_id=self.turn_id,
                call_id=call_id,
                tool=tool,
                arguments=arguments,
                endpoint=endpoint,
            )
        )

    def tool_finished(self, call_id: str, tool: str, content: str, started: float) -> None:
        """A tool call's outcome; tool results that report a failure start with `Error:`."""
        failed = content.startswith("Error:")
        self._topic.publish(
            ToolCallFinished(
                turn_id=self.turn_id,
                call_id=call_id,
                tool=tool,
                ok=not failed,
                duration_ms=round((workflow.time() - started) * 1000),
                error=content.removeprefix("Error:").strip()[:300] if failed else None,
            )
        )

    def answered(self, answer: str, model: str | None) -> None:
        self._topic.publish(TurnAnswered(turn_id=self.turn_id, answer=answer, model=model))
        self.turn_offset = None

    def plan_input(self, window: list[Message], spent: UsageTotals) -> PlanInput:
        """A planning call's input, naming the turn whose text it streams, if anyone watches."""
        return PlanInput(messages=window, spent=spent, turn_id=self.turn_id, watched=self.watched)

    def shown_in(self, status: AgentStatus) -> AgentStatus:
        """`status` with the turn in progress, if any, and the offset its events start at."""
        if self.turn_offset is None:
            return status
        return status.model_copy(update={"turn_id": self.turn_id, "turn_offset": self.turn_offset})

    def detach(self) -> None:
        """Release subscribers before the run ends; they follow the conversation's next run."""
        self._detached = True
        self._stream.detach_pollers()

    def state(self) -> WorkflowStreamState:
        """What the next run needs to continue the stream (offsets stay the same)."""
        return self._stream.get_state()

    def _offset(self) -> int:
        # The stream's offset query handler: WorkflowStream 1.35 has no public accessor for it.
        return self._stream._on_offset()

"""What the benchmark sends, and how one turn is timed with Temporal and without it.

A turn kind is one user message the offline model always answers the same way (a plain answer, a
local tool, a remote tool behind each Nexus endpoint, two tools at once). `TemporalDriver` sends
turns to `AgentWorkflow` conversations as the Update `send_message`, the way the chat client does,
and reads each conversation's event history. `InProcessAgent` is the lower bound: the workflow's
loop written as plain Python, calling the same planner (`plan_next_action`, offline model) and the
same tool functions directly, with no Temporal at all.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle

from app.agent.conversation import planner_window
from app.agent.llm.activity import plan_next_action
from app.agent.models import (
    AgentConfig,
    AgentInput,
    AgentResult,
    Message,
    PlanInput,
    ToolCall,
    ToolRequest,
    cap_text,
)
from app.agent.tools.activity import execute_tool
from app.agent.tools.catalog import TOOLS
from app.agent.workflow import AgentWorkflow
from app.core.names import ORCHESTRATOR
from app.finance.market_data import stock_quote
from app.finance.roi import compute_roi
from app.finance.service import CalculateRoiInput, StockPriceInput
from app.it.activities import fetch_jira_metrics, get_host_addresses
from app.it.service import JiraMetricsInput


@dataclass(frozen=True)
class TurnKind:
    """One kind of turn: the message that causes it, and text its answer must contain."""

    key: str
    label: str
    message: str
    expect: tuple[str, ...]

    def check(self, answer: str) -> None:
        """Fail loudly if a tool did not run (a wrong endpoint would still give an answer)."""
        missing = [text for text in self.expect if text not in answer]
        if missing or "Error" in answer or "failed" in answer:
            raise RuntimeError(f"unexpected answer to {self.message!r}: {answer!r}")


TURN_KINDS = (
    TurnKind("plain", "plain answer", "hello", ("Hello",)),
    TurnKind("local_tool", "local tool (calculator)", "Calculate 15 * 23", ("345",)),
    TurnKind("remote_it", "Nexus get_ip (IT)", "What is my IP address?", ("Your IP address",)),
    TurnKind(
        "remote_finance",
        "Nexus stock_price (Finance)",
        "What is the stock price of AAPL?",
        ("AAPL is at",),
    ),
    TurnKind(
        "parallel",
        "two tools in parallel",
        "Calculate 15 * 23 and echo done",
        ("345", "done"),
    ),
)
KINDS_BY_KEY = {kind.key: kind for kind in TURN_KINDS}


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# ---------------------------------------------------------------------------------------------
# With Temporal


# Spans of a turn that event timestamps show, each ending at an event of the given type.
WFT_QUEUED = "workflow task queued"
WFT_RUNNING = "workflow task in worker"
ACTIVITY_QUEUED = "activity queued"
ACTIVITY_RUNNING = "activity running"
NEXUS_OPERATION = "Nexus operation"
SPANS = (WFT_QUEUED, WFT_RUNNING, ACTIVITY_QUEUED, ACTIVITY_RUNNING, NEXUS_OPERATION)


@dataclass
class HistoryTotals:
    """Size and composition of event histories, summed over conversations."""

    events: int = 0
    bytes: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    spans_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SPANS, 0.0))

    def __add__(self, other: HistoryTotals) -> HistoryTotals:
        return HistoryTotals(
            self.events + other.events,
            self.bytes + other.bytes,
            self.by_type + other.by_type,
            {name: self.spans_ms[name] + other.spans_ms[name] for name in SPANS},
        )

    def __sub__(self, other: HistoryTotals) -> HistoryTotals:
        by_type = Counter(self.by_type)
        by_type.subtract(other.by_type)
        spans = {name: self.spans_ms[name] - other.spans_ms[name] for name in SPANS}
        return HistoryTotals(self.events - other.events, self.bytes - other.bytes, by_type, spans)


def _span_ending_at(event: HistoryEvent) -> tuple[str, int] | None:
    """The span `event` ends, and the id of the event that started it."""
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
        return WFT_QUEUED, event.workflow_task_started_event_attributes.scheduled_event_id
    if kind == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
        return WFT_RUNNING, event.workflow_task_completed_event_attributes.started_event_id
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        return ACTIVITY_QUEUED, event.activity_task_started_event_attributes.scheduled_event_id
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        return ACTIVITY_RUNNING, event.activity_task_completed_event_attributes.started_event_id
    if kind == EventType.EVENT_TYPE_NEXUS_OPERATION_COMPLETED:
        return NEXUS_OPERATION, event.nexus_operation_completed_event_attributes.scheduled_event_id
    return None


def spans_ms(events: Sequence[HistoryEvent]) -> dict[str, float]:
    """Milliseconds spent in each span, summed over a history, from the events' timestamps."""
    times = {event.event_id: event.event_time.ToMicroseconds() / 1000 for event in events}
    spans = dict.fromkeys(SPANS, 0.0)
    for event in events:
        span = _span_ending_at(event)
        if span is not None:
            name, started_by = span
            spans[name] += times[event.event_id] - times[started_by]
    return spans


async def history_totals(handle: WorkflowHandle[AgentWorkflow, AgentResult]) -> HistoryTotals:
    """A conversation's event history: event count, bytes, events by type, time by span."""
    events = (await handle.fetch_history()).events
    by_type = Counter(
        EventType.Name(event.event_type).removeprefix("EVENT_TYPE_") for event in events
    )
    return HistoryTotals(
        len(events), sum(event.ByteSize() for event in events), by_type, spans_ms(events)
    )


@dataclass
class TemporalDriver:
    """Sends turns to agent conversations on one server, as the chat client does."""

    client: Client
    config: AgentConfig
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    async def start(self, label: str) -> WorkflowHandle[AgentWorkflow, AgentResult]:
        return await self.client.start_workflow(
            AgentWorkflow.run,
            AgentInput(config=self.config),
            id=f"bench-{self.run_id}-{label}-{uuid.uuid4().hex[:8]}",
            task_queue=ORCHESTRATOR.task_queue,
        )

    async def turn(
        self, handle: WorkflowHandle[AgentWorkflow, AgentResult], kind: TurnKind
    ) -> float:
        """Send one message and wait for the answer; returns the latency in milliseconds."""
        started = time.perf_counter()
        answer = await handle.execute_update(AgentWorkflow.send_message, kind.message)
        latency = elapsed_ms(started)
        kind.check(answer)
        return latency

    async def end(self, handles: list[WorkflowHandle[AgentWorkflow, AgentResult]]) -> None:
        """End conversations, so their workflows leave the worker's cache."""
        await asyncio.gather(*(h.signal(AgentWorkflow.end_conversation) for h in handles))
        await asyncio.gather(*(h.result() for h in handles))


@dataclass
class KindSamples:
    """Latencies of one turn kind, and the history its timed turns added."""

    latencies_ms: list[float] = field(default_factory=list)
    history: HistoryTotals = field(default_factory=HistoryTotals)


async def sequential_turns(
    driver: TemporalDriver, kinds: tuple[TurnKind, ...], turns: int, turns_per_conversation: int
) -> dict[str, KindSamples]:
    """`turns` sequential turns of each kind, interleaved, so that noise hits every kind alike.

    Each kind has its own conversations of `turns_per_conversation` timed turns. A conversation
    starts with one untimed turn of its kind (the workflow is then running and cached), and its
    history is read after that turn and at the end, so the figures per turn are steady state.
    """
    samples = {kind.key: KindSamples() for kind in kinds}
    open_: dict[str, tuple[WorkflowHandle[AgentWorkflow, AgentResult], HistoryTotals]] = {}

    async def close(kind: TurnKind) -> None:
        handle, before = open_.pop(kind.key)
        samples[kind.key].history += await history_totals(handle) - before
        await driver.end([handle])

    for index in range(turns):
        for kind in kinds:
            if index % turns_per_conversation == 0:
                if kind.key in open_:
                    await close(kind)
                handle = await driver.start(kind.key)
                await driver.turn(handle, kind)
                open_[kind.key] = (handle, await history_totals(handle))
            samples[kind.key].latencies_ms.append(await driver.turn(open_[kind.key][0], kind))
    for kind in kinds:
        await close(kind)
    return samples


@dataclass
class ConcurrentRun:
    """Latencies and wall time of conversations sending turns at the same time."""

    latencies_ms: list[float]
    wall_seconds: float
    handles: list[WorkflowHandle[AgentWorkflow, AgentResult]]


async def concurrent_turns(
    driver: TemporalDriver,
    kind: TurnKind,
    conversations: int,
    turns_each: int,
    on_ready: Callable[[], None] = lambda: None,
) -> ConcurrentRun:
    """`conversations` conversations, each sending `turns_each` turns one after another.

    Every conversation is started and has one untimed turn first; `on_ready` runs just before
    the timed part. The conversations are left open, for the caller to measure, then end.
    """
    handles = await asyncio.gather(
        *(driver.start(f"{kind.key}-x{conversations}") for _ in range(conversations))
    )
    await asyncio.gather(*(driver.turn(handle, kind) for handle in handles))

    async def converse(handle: WorkflowHandle[AgentWorkflow, AgentResult]) -> list[float]:
        return [await driver.turn(handle, kind) for _ in range(turns_each)]

    on_ready()
    started = time.perf_counter()
    per_conversation = await asyncio.gather(*(converse(handle) for handle in handles))
    wall_seconds = time.perf_counter() - started
    latencies = [latency for conversation in per_conversation for latency in conversation]
    return ConcurrentRun(latencies, wall_seconds, list(handles))


# ---------------------------------------------------------------------------------------------
# Without Temporal: the lower bound


async def _get_ip(args: BaseModel) -> BaseModel:
    return get_host_addresses()


async def _stock_price(args: BaseModel) -> BaseModel:
    return await stock_quote(cast(StockPriceInput, args).ticker)


async def _calculate_roi(args: BaseModel) -> BaseModel:
    return compute_roi(cast(CalculateRoiInput, args))


async def _jira_metrics(args: BaseModel) -> BaseModel:
    return await fetch_jira_metrics(cast(JiraMetricsInput, args))


# The functions behind the Nexus handlers, called directly.
REMOTE_TOOL_FUNCTIONS: dict[str, Callable[[BaseModel], Awaitable[BaseModel]]] = {
    "get_ip": _get_ip,
    "stock_price": _stock_price,
    "calculate_roi": _calculate_roi,
    "jira_metrics": _jira_metrics,
}


@dataclass
class TurnTiming:
    """Where one in-process turn spent its time."""

    total_ms: float
    llm_calls: int
    planner_ms: float
    tool_ms: float


@dataclass
class InProcessAgent:
    """`AgentWorkflow`'s turn loop as plain Python: same planner, same tools, no Temporal."""

    config: AgentConfig = field(default_factory=AgentConfig)
    history: list[Message] = field(default_factory=list)

    async def turn(self, text: str) -> tuple[str, TurnTiming]:
        started = time.perf_counter()
        planner_ms = tool_ms = 0.0
        llm_calls = 0
        self.history.append(Message.user(text))
        answer: str | None = None
        while answer is None and llm_calls < self.config.max_steps_per_turn:
            window = planner_window(
                self.history, self.config.planner_window_chars, self.config.planner_window_messages
            )
            plan_started = time.perf_counter()
            plan = await plan_next_action(PlanInput(messages=window))
            planner_ms += elapsed_ms(plan_started)
            llm_calls += 1
            reply = plan.message
            self.history.append(reply)
            if reply.tool_calls:
                results = await asyncio.gather(*(self._run_tool(c) for c in reply.tool_calls))
                self.history.extend(message for message, _ in results)
                # The tools of one step run concurrently: the step costs the slowest one.
                tool_ms += max(duration for _, duration in results)
            else:
                answer = reply.content or ""
        return answer or "", TurnTiming(elapsed_ms(started), llm_calls, planner_ms, tool_ms)

    async def _run_tool(self, call: ToolCall) -> tuple[Message, float]:
        """One tool call, as the workflow makes it; returns the result and the tool's own time."""
        tool = TOOLS[call.name]
        args = tool.input_model.model_validate_json(call.arguments or "{}")
        limit = self.config.max_tool_result_chars
        started = time.perf_counter()
        if tool.route is None:
            request = ToolRequest(
                name=tool.name, arguments=args.model_dump_json(), max_result_chars=limit
            )
            result = await execute_tool(request)
            duration = elapsed_ms(started)
            text = result.content
        else:
            output = await REMOTE_TOOL_FUNCTIONS[call.name](args)
            duration = elapsed_ms(started)
            text = cap_text(output.model_dump_json(), limit)
        return Message.tool_result(call, text), duration


@dataclass
class InProcessSamples:
    """Per-turn timings of one kind without Temporal."""

    timings: list[TurnTiming] = field(default_factory=list)


async def in_process_turns(
    kinds: tuple[TurnKind, ...], turns: int, turns_per_conversation: int
) -> dict[str, InProcessSamples]:
    """The lower bound: the same turns, interleaved the same way, in conversations as long."""
    samples = {kind.key: InProcessSamples() for kind in kinds}
    agents: dict[str, InProcessAgent] = {}
    for index in range(turns):
        for kind in kinds:
            if index % turns_per_conversation == 0:
                agents[kind.key] = InProcessAgent()
                kind.check((await agents[kind.key].turn(kind.message))[0])
            answer, timing = await agents[kind.key].turn(kind.message)
            kind.check(answer)
            samples[kind.key].timings.append(timing)
    return samples

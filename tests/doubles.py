"""Test doubles for the agent loop: a scripted LLM, and a harness that runs one conversation.

The scripted LLM is registered under the real activity name `plan_next_action`, so the workflow
under test is the production workflow; only the model's decisions are scripted.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from app.agent.llm.usage import LLMUsage
from app.agent.models import (
    AgentConfig,
    AgentInput,
    AgentResult,
    Message,
    PlanInput,
    PlanOutput,
    ToolCall,
)
from app.agent.tools.activity import execute_tool
from app.agent.tools.approvals import PendingApproval, ToolDecision
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow

Script = Callable[[list[Message]], Message]


def call(name: str, arguments: dict[str, object] | str, call_id: str | None = None) -> ToolCall:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(id=call_id or f"call-{uuid.uuid4().hex[:8]}", name=name, arguments=text)


def asks(*calls: ToolCall) -> Message:
    return Message(role="assistant", tool_calls=list(calls))


def says(text: str) -> Message:
    return Message.assistant(text)


def tool_results(messages: list[Message]) -> list[str]:
    """The tool results of the current turn."""
    start = max(i for i, m in enumerate(messages) if m.role == "user")
    return [m.content or "" for m in messages[start:] if m.role == "tool"]


def tools_then_answer(*calls: ToolCall) -> Script:
    """An LLM that asks for `calls` in one step, then answers with the results."""

    def script(messages: list[Message]) -> Message:
        if messages[-1].role == "user":
            return asks(*calls)
        return says(" | ".join(tool_results(messages)))

    return script


class ScriptedLLM:
    """A `plan_next_action` double that answers with a script and records what it was sent."""

    def __init__(self, script: Script, usage: LLMUsage | None = None) -> None:
        self.script = script
        # What every call reports having used (by default: nothing known).
        self.usage = usage or LLMUsage()
        self.inputs: list[PlanInput] = []
        self.gate: asyncio.Event | None = None

    @activity.defn(name="plan_next_action")
    async def plan_next_action(self, input: PlanInput) -> PlanOutput:
        self.inputs.append(input)
        if self.gate is not None:
            await self.gate.wait()
        return PlanOutput(message=self.script(input.messages), model="scripted", usage=self.usage)


class AgentHarness:
    """A worker with the scripted LLM and one conversation on the time-skipping server."""

    def __init__(self, env: WorkflowEnvironment, llm: ScriptedLLM, config: AgentConfig) -> None:
        self.client: Client = env.client
        self.llm = llm
        self.config = config
        self.task_queue = f"agent-test-{uuid.uuid4()}"
        self.handle: WorkflowHandle[AgentWorkflow, AgentResult] | None = None

    async def start(self) -> WorkflowHandle[AgentWorkflow, AgentResult]:
        self.handle = await self.client.start_workflow(
            AgentWorkflow.run,
            AgentInput(config=self.config),
            id=f"conversation-{uuid.uuid4()}",
            task_queue=self.task_queue,
        )
        return self.handle

    def worker(self, *activities: Callable[..., object]) -> Worker:
        return Worker(
            self.client,
            task_queue=self.task_queue,
            workflows=[AgentWorkflow],
            activities=[self.llm.plan_next_action, *(activities or [execute_tool])],
        )


async def send(handle: WorkflowHandle[AgentWorkflow, AgentResult], message: str) -> str:
    """Send one message and wait for the answer."""
    return await handle.execute_update(AgentWorkflow.send_message, message)


async def pending_calls(
    handle: WorkflowHandle[AgentWorkflow, AgentResult], count: int = 1, timeout: float = 30
) -> list[PendingApproval]:
    """The tool calls waiting for approval, once there are `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        calls = (await handle.query(AgentWorkflow.get_pending_approvals)).calls
        if len(calls) == count:
            return calls
        assert time.monotonic() < deadline, f"expected {count} pending calls, got {calls}"
        await asyncio.sleep(0.05)


async def decision_for(
    handle: WorkflowHandle[AgentWorkflow, AgentResult], call_id: str, approve: bool, note: str = ""
) -> ToolDecision:
    """A decision on the waiting call `call_id` that names what was shown: its id and digest."""
    waiting = (await handle.query(AgentWorkflow.get_pending_approvals)).calls
    shown = next((p for p in waiting if call_id in (p.call_id, p.approval_id)), None)
    decision = ToolDecision(call_id=call_id, approve=approve, note=note)
    if shown is not None:
        decision.approval_id, decision.digest = shown.approval_id, shown.digest
    return decision


async def history(handle: WorkflowHandle[AgentWorkflow, AgentResult]) -> list[Message]:
    """The conversation as the workflow holds it."""
    return (await handle.query(AgentWorkflow.get_history)).messages


@asynccontextmanager
async def real_agent(
    env: WorkflowEnvironment, config: AgentConfig | None = None
) -> AsyncIterator[WorkflowHandle[AgentWorkflow, AgentResult]]:
    """One conversation, served by the real orchestrator worker on a task queue of its own."""
    task_queue = f"agent-{uuid.uuid4()}"
    async with orchestrator_worker(env.client, task_queue=task_queue):
        yield await env.client.start_workflow(
            AgentWorkflow.run,
            AgentInput(config=config or AgentConfig()),
            id=f"conversation-{uuid.uuid4()}",
            task_queue=task_queue,
        )

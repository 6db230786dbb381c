"""The workers' sandbox runner gives payload codecs the same serialization contexts as the SDK's.

`app.core.sandbox.SandboxedRunner` answers the SDK's per-payload question "which workflow,
activity or operation is this payload for?" without re-entering the sandbox. A codec that records
the context of every payload it encodes sees exactly what it sees with the SDK's own runner.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from app.agent.models import AgentConfig, AgentInput
from app.agent.tools.activity import execute_tool
from app.agent.workflow import AgentWorkflow
from app.core.sandbox import SandboxedRunner
from tests.doubles import ScriptedLLM, call, send, tools_then_answer


class RecordingCodec(PayloadCodec, WithSerializationContext):
    """Leaves payloads as they are; records the context of each one the worker encodes."""

    def __init__(self, seen: list[str], context: SerializationContext | None = None) -> None:
        self.seen = seen
        self.context = context

    def with_context(self, context: SerializationContext) -> RecordingCodec:
        return RecordingCodec(self.seen, context)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.seen.extend(describe(self.context) for _ in payloads)
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


def describe(context: SerializationContext | None) -> str:
    if isinstance(context, ActivitySerializationContext):
        kind = "local activity" if context.is_local else "activity"
        return f"{kind} {context.activity_type}"
    if isinstance(context, WorkflowSerializationContext):
        return "workflow"
    return type(context).__name__


async def contexts_of_one_turn(env: WorkflowEnvironment, runner: WorkflowRunner) -> list[str]:
    """The contexts of the payloads a worker encodes for one local-tool turn."""
    seen: list[str] = []
    converter = dataclasses.replace(pydantic_data_converter, payload_codec=RecordingCodec(seen))
    config = env.client.config()
    config["data_converter"] = converter
    client = Client(**config)
    task_queue = f"sandbox-{uuid.uuid4()}"
    llm = ScriptedLLM(tools_then_answer(call("calculator", {"expression": "6 * 7"})))
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[AgentWorkflow],
        activities=[llm.plan_next_action, execute_tool],
        workflow_runner=runner,
    ):
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput(config=AgentConfig()),
            id=f"conversation-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        # Encoded by the client, not the worker: only what follows is the worker's.
        seen.clear()
        assert "42" in await send(handle, "What is 6 * 7?")
        await handle.terminate()
    return seen


async def test_payloads_get_the_same_contexts_as_with_the_sdk_runner(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    ours = await contexts_of_one_turn(time_skipping_env, SandboxedRunner())
    sdks = await contexts_of_one_turn(time_skipping_env, SandboxedWorkflowRunner())
    assert sorted(ours) == sorted(sdks)
    # Two planning calls (input and result each) and one calculator call, each for itself.
    assert ours.count("activity plan_next_action") == 4
    assert ours.count("local activity execute_tool") == 2

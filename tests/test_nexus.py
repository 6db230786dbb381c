"""Remote tools end to end on the dev server: cross-namespace Nexus routing, failures, setup.

The orchestrator runs in `default`; the IT and Finance handlers run in their own namespaces behind
the real endpoints. A recording interceptor on the handler workers tells which namespace served
each operation; the orchestrator's event history tells which endpoint each call went through.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from temporalio import nexus
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    ExecuteNexusOperationStartInput,
    Interceptor,
    NexusOperationInboundInterceptor,
)

from app.agent.models import AgentConfig, AgentInput
from app.agent.tools.activity import execute_tool
from app.agent.tools.endpoints import check_endpoints
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.core.names import FINANCE, IT
from app.core.setup import ensure_nexus_setup
from app.finance.market_data import SampleMarketData
from app.finance.worker import finance_worker
from app.it.activities import get_host_addresses
from app.it.worker import it_worker
from tests.conftest import client_for
from tests.doubles import ScriptedLLM, call, send, tools_then_answer


class RecordNamespaces(Interceptor):
    """Records (operation, namespace, endpoint) for every Nexus operation a worker serves."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def intercept_nexus_operation(
        self, next: NexusOperationInboundInterceptor
    ) -> NexusOperationInboundInterceptor:
        calls = self.calls

        class Recorder(NexusOperationInboundInterceptor):
            async def execute_nexus_operation_start(
                self, input: ExecuteNexusOperationStartInput
            ) -> Any:
                info = nexus.info()
                calls.append((input.ctx.operation, info.namespace, info.endpoint))
                return await self.next.execute_nexus_operation_start(input)

        return Recorder(next)


@asynccontextmanager
async def handler_workers(
    env: WorkflowEnvironment, recorder: RecordNamespaces, *, it: bool = True, finance: bool = True
) -> AsyncIterator[None]:
    """The IT and/or Finance workers, as their programs configure them, in their namespaces."""
    async with AsyncExitStack() as stack:
        if it:
            it_client = await client_for(env, IT.namespace)
            await stack.enter_async_context(it_worker(it_client, interceptors=[recorder]))
        if finance:
            finance_client = await client_for(env, FINANCE.namespace)
            await stack.enter_async_context(finance_worker(finance_client, interceptors=[recorder]))
        yield


@asynccontextmanager
async def orchestrator(client: Client, *activities: Any) -> AsyncIterator[str]:
    task_queue = f"orchestrator-{uuid.uuid4()}"
    options = {"activities": list(activities)} if activities else {}
    async with orchestrator_worker(client, task_queue=task_queue, **options):
        yield task_queue


@pytest.fixture(scope="module")
async def nexus_ready(dev_env: WorkflowEnvironment) -> WorkflowEnvironment:
    await ensure_nexus_setup(dev_env.client)
    return dev_env


async def test_setup_twice_in_a_row_succeeds(dev_env: WorkflowEnvironment):
    await ensure_nexus_setup(dev_env.client)
    again = await ensure_nexus_setup(dev_env.client)
    assert again == [
        "namespace it-namespace: already exists",
        "namespace finance-namespace: already exists",
        "endpoint it-nexus-endpoint -> it-namespace/it-tools-queue: already exists",
        "endpoint finance-nexus-endpoint -> finance-namespace/finance-tools-queue: already exists",
    ]


async def test_conversation_uses_all_four_remote_tools_across_namespaces(
    nexus_ready: WorkflowEnvironment,
):
    client = nexus_ready.client
    recorder = RecordNamespaces()
    price = (await SampleMarketData().quote("AAPL")).price
    async with handler_workers(nexus_ready, recorder), orchestrator(client) as task_queue:
        handle = await client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=f"remote-{uuid.uuid4()}", task_queue=task_queue
        )
        answers = [
            await send(handle, "What is the stock price of AAPL?"),
            await send(handle, "What is my IP address?"),
            await send(handle, "Calculate the ROI for $10000 invested at 5% for 10 years"),
            await send(handle, "Show Jira metrics for project PROJ"),
        ]
        events = (await handle.fetch_history()).events
    assert answers[0] == f"AAPL is at ${price:,.2f}, from sample data (no market feed configured)."
    assert (
        answers[1]
        == f"Your IP address is {get_host_addresses().ip} (host {get_host_addresses().hostname})."
    )
    assert "grows to $16,288.95: a gain of $6,288.95, ROI 62.89%." in answers[2]
    assert answers[3].startswith("Project PROJ: ")
    assert answers[3].endswith("(sample data (no Jira server configured)).")
    scheduled = [
        e.nexus_operation_scheduled_event_attributes
        for e in events
        if e.event_type == EventType.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED
    ]
    assert [(a.endpoint, a.service, a.operation) for a in scheduled] == [
        ("finance-nexus-endpoint", "FinanceService", "stock_price"),
        ("it-nexus-endpoint", "ITService", "get_ip"),
        ("finance-nexus-endpoint", "FinanceService", "calculate_roi"),
        ("it-nexus-endpoint", "ITService", "jira_metrics"),
    ]
    assert recorder.calls == [
        ("stock_price", "finance-namespace", "finance-nexus-endpoint"),
        ("get_ip", "it-namespace", "it-nexus-endpoint"),
        ("calculate_roi", "finance-namespace", "finance-nexus-endpoint"),
        ("jira_metrics", "it-namespace", "it-nexus-endpoint"),
    ]


async def test_bad_arguments_fail_fast_and_the_llm_reads_why(nexus_ready: WorkflowEnvironment):
    client = nexus_ready.client
    llm = ScriptedLLM(
        tools_then_answer(
            call("stock_price", {"ticker": "not a ticker!"}),
            call("calculate_roi", {"principal": 1000, "rate": 5, "years": -3}),
            call("jira_metrics", {"project": "  "}),
        )
    )
    config = AgentConfig(nexus_timeout_seconds=30)
    async with (
        handler_workers(nexus_ready, RecordNamespaces()),
        orchestrator(client, llm.plan_next_action, execute_tool, check_endpoints) as task_queue,
    ):
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput(config=config),
            id=f"bad-args-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        answer = await send(handle, "three bad calls")
    stock, roi, jira = answer.split(" | ")
    assert stock.startswith("Error: the stock_price tool failed: 'not a ticker!' is not a ticker")
    assert roi == "Error: the calculate_roi tool failed: years must be between 0 and 100"
    assert jira.startswith("Error: the jira_metrics tool failed: the Jira project key is empty")
    # Non-retryable: each answer is the handler's error, not the 30-second operation timeout.


async def test_a_remote_worker_that_is_down_makes_the_tool_unavailable_not_the_agent(
    nexus_ready: WorkflowEnvironment,
):
    client = nexus_ready.client
    recorder = RecordNamespaces()
    async with orchestrator(client) as task_queue:
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput(config=AgentConfig(nexus_timeout_seconds=6)),
            id=f"down-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        async with handler_workers(nexus_ready, recorder, finance=False):
            down = await send(handle, "What is the stock price of AAPL?")
        async with handler_workers(nexus_ready, recorder, it=False):
            up = await send(handle, "What is the stock price of AAPL?")
    assert down == (
        # Said once, not "the stock_price tool failed: the stock_price tool is unavailable".
        "The stock_price tool is unavailable: "
        "finance-nexus-endpoint did not answer within 6 seconds."
    )
    assert up.startswith("AAPL is at $")
    assert recorder.calls[-1][:2] == ("stock_price", "finance-namespace")


async def test_scripted_llm_reaches_remote_tools_with_typed_results(
    nexus_ready: WorkflowEnvironment,
):
    client = nexus_ready.client
    llm = ScriptedLLM(
        tools_then_answer(call("calculate_roi", {"principal": 10000, "rate": 0.05, "years": 10}))
    )
    async with (
        handler_workers(nexus_ready, RecordNamespaces(), it=False),
        orchestrator(client, llm.plan_next_action, execute_tool, check_endpoints) as task_queue,
    ):
        handle = await client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=f"typed-{uuid.uuid4()}", task_queue=task_queue
        )
        answer = await send(handle, "roi as a fraction")
    assert answer == (
        '{"principal":10000.0,"annual_rate_percent":5.0,'
        '"rate_interpretation":"0.05 was read as a fraction: 5% per year","years":10.0,'
        '"final_value":16288.95,"gain":6288.95,"roi_percent":62.89}'
    )

"""Nexus endpoints that do not exist: the worker refuses to start, and a turn never hangs on one.

A call to a missing endpoint is refused by the server as a bad command, which fails the workflow
task on every retry; these tests show that the orchestrator worker says so at start, in one line,
and that an endpoint deleted while the worker runs makes its tools answer "unavailable".
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
from temporalio.api.operatorservice.v1 import (
    CreateNexusEndpointRequest,
    DeleteNexusEndpointRequest,
)
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment

from app.agent.models import AgentInput, EndpointCheck, EndpointCheckResult
from app.agent.tools.activity import execute_tool
from app.agent.tools.catalog import TOOLS
from app.agent.tools.endpoints import check_endpoints
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.core.names import FINANCE, IT, ORCHESTRATOR
from tests.conftest import start_dev_server
from tests.doubles import (
    ScriptedLLM,
    call,
    decision_for,
    pending_calls,
    send,
    tools_then_answer,
)
from tests.stack_processes import program_env, run_program


async def create_endpoint(client: Client, name: str, namespace: str, task_queue: str) -> str:
    """Create endpoint `name`; returns its id."""
    target = EndpointTarget(
        worker=EndpointTarget.Worker(namespace=namespace, task_queue=task_queue)
    )
    created = await client.operator_service.create_nexus_endpoint(
        CreateNexusEndpointRequest(spec=EndpointSpec(name=name, target=target))
    )
    return created.endpoint.id


@pytest.fixture(scope="module")
async def server_without_finance_endpoint() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of its own with the namespaces and the IT endpoint, but no Finance one."""
    env = await start_dev_server()
    await create_endpoint(env.client, IT.endpoint, IT.namespace, IT.task_queue)
    yield env
    await env.shutdown()


async def test_the_orchestrator_worker_will_not_start_without_its_endpoints(
    server_without_finance_endpoint: WorkflowEnvironment,
):
    address = server_without_finance_endpoint.client.service_client.config.target_host
    finished = await run_program(
        [ORCHESTRATOR.program], env=program_env(TEMPORAL_ADDRESS=address), timeout=60
    )
    assert finished.returncode == 1
    assert finished.stderr.splitlines() == [
        f"{ORCHESTRATOR.name}: the Nexus endpoint does not exist on this server: "
        f"{FINANCE.endpoint}. Create them with `uv run python -m app.core.setup`, then start "
        "the worker again"
    ]


@pytest.fixture
def vanishing_endpoint(monkeypatch: pytest.MonkeyPatch) -> str:
    """`get_ip` routed to an endpoint of a fresh name, which the test creates and deletes."""
    name = f"vanishing-{uuid.uuid4().hex[:12]}"
    tool = TOOLS["get_ip"]
    assert tool.route is not None
    monkeypatch.setitem(
        TOOLS,
        "get_ip",
        dataclasses.replace(tool, route=dataclasses.replace(tool.route, endpoint=name)),
    )
    return name


UNAVAILABLE = (
    "Error: the get_ip tool is unavailable: the Nexus endpoint {name} does not exist on the "
    "server (`uv run python -m app.core.setup` creates it)."
)


async def test_a_deleted_endpoint_makes_its_tools_unavailable_and_the_turn_answers(
    dev_env: WorkflowEnvironment, vanishing_endpoint: str
):
    client = dev_env.client
    endpoint_id = await create_endpoint(client, vanishing_endpoint, IT.namespace, IT.task_queue)
    await client.operator_service.delete_nexus_endpoint(
        DeleteNexusEndpointRequest(id=endpoint_id, version=1)
    )
    llm = ScriptedLLM(tools_then_answer(call("get_ip", {})))
    task_queue = f"vanished-{uuid.uuid4()}"
    async with orchestrator_worker(
        client,
        task_queue=task_queue,
        activities=[llm.plan_next_action, execute_tool, check_endpoints],
    ):
        handle = await client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=f"vanished-{uuid.uuid4()}", task_queue=task_queue
        )
        answer = await send(handle, "What is my IP address?")
        events = (await handle.fetch_history()).events
    assert answer == UNAVAILABLE.format(name=vanishing_endpoint)
    assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]


async def test_an_endpoint_deleted_between_the_check_and_the_call_is_checked_again(
    dev_env: WorkflowEnvironment, vanishing_endpoint: str
):
    # The first check answers as if the endpoint still existed, as it would have a moment before
    # its deletion; the server then refuses the call and fails the workflow task.
    checks: list[int] = []

    @activity.defn(name="check_endpoints")
    async def stale_then_real_check(check: EndpointCheck) -> EndpointCheckResult:
        checks.append(len(checks))
        if len(checks) == 1:
            return EndpointCheckResult(missing=[])
        return await check_endpoints(check)

    client = dev_env.client
    llm = ScriptedLLM(tools_then_answer(call("get_ip", {})))
    task_queue = f"vanishing-{uuid.uuid4()}"
    async with orchestrator_worker(
        client,
        task_queue=task_queue,
        activities=[llm.plan_next_action, execute_tool, stale_then_real_check],
    ):
        handle = await client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=f"vanishing-{uuid.uuid4()}", task_queue=task_queue
        )
        answer = await send(handle, "What is my IP address?")
        events = (await handle.fetch_history()).events
    failed = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert answer == UNAVAILABLE.format(name=vanishing_endpoint)
    assert len(checks) == 2
    assert [e.workflow_task_failed_event_attributes.cause for e in failed] == [
        WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_BAD_SCHEDULE_NEXUS_OPERATION_ATTRIBUTES
    ]


async def test_an_endpoint_deleted_during_an_approval_wait_answers_unavailable(
    dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    name = f"vanishing-{uuid.uuid4().hex[:12]}"
    tool = TOOLS["create_jira_issue"]
    assert tool.route is not None
    monkeypatch.setitem(
        TOOLS,
        "create_jira_issue",
        dataclasses.replace(tool, route=dataclasses.replace(tool.route, endpoint=name)),
    )
    client = dev_env.client
    endpoint_id = await create_endpoint(client, name, IT.namespace, IT.task_queue)
    issue: dict[str, object] = {"project": "PROJ", "summary": "The login page is slow"}
    llm = ScriptedLLM(tools_then_answer(call("create_jira_issue", issue, "c1")))
    task_queue = f"vanishing-approval-{uuid.uuid4()}"
    async with orchestrator_worker(
        client,
        task_queue=task_queue,
        activities=[llm.plan_next_action, execute_tool, check_endpoints],
    ):
        handle = await client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=f"vanishing-{uuid.uuid4()}", task_queue=task_queue
        )
        turn = await handle.start_update(
            AgentWorkflow.send_message,
            "Create a Jira issue",
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        await pending_calls(handle)
        await client.operator_service.delete_nexus_endpoint(
            DeleteNexusEndpointRequest(id=endpoint_id, version=1)
        )
        started = time.monotonic()
        decided = await handle.execute_update(
            AgentWorkflow.decide_tool_call, await decision_for(handle, "c1", approve=True)
        )
        answer = await turn.result()
        elapsed = time.monotonic() - started
        events = (await handle.fetch_history()).events
    print(f"\napproved and answered in {elapsed:.2f} s")
    assert decided.approved
    assert answer == (
        f"Error: the create_jira_issue tool is unavailable: the Nexus endpoint {name} does not "
        "exist on the server (`uv run python -m app.core.setup` creates it)."
    )
    assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    # The decision is in the history: it was not lost in a failing workflow task.
    accepted = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert accepted == ["send_message", "decide_tool_call"]

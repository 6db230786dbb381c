"""Approved writes on the dev server: `create_jira_issue` through `it-nexus-endpoint`, for real.

The orchestrator runs the offline model in `default`; the IT handler runs in `it-namespace` with a
fresh in-memory sample Jira per test. The tests pin down that an approved call creates exactly one
issue (even when the IT side retries its activity after Jira created it), that a denied call
never reaches the IT namespace, and that the wait survives a restart of the orchestrator worker,
with the decision sent by the `temporal` CLI. The IT side's field checks are tested directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateHandle, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment

import app.it.activities as it_activities
from app.agent.llm.client import litellm_module
from app.agent.models import AgentConfig, AgentInput, AgentResult
from app.agent.tools.activity import execute_tool
from app.agent.tools.endpoints import check_endpoints
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.core.dev_server import find_binary
from app.core.names import IT
from app.core.setup import ensure_nexus_setup
from app.core.tool_errors import InvalidToolArguments
from app.it.activities import SampleJiraClient, issue_fields
from app.it.handler import creation_key
from app.it.service import CreateJiraIssueInput, CreateJiraIssueOutput
from tests.conftest import client_for
from tests.doubles import ScriptedLLM, call, decision_for, pending_calls, tools_then_answer
from tests.test_nexus import RecordNamespaces, handler_workers

Handle = WorkflowHandle[AgentWorkflow, AgentResult]
SLOW_LOGIN = "Create a Jira issue in PROJ: the login page is slow"


class FlakyJira(SampleJiraClient):
    """Creates the issue, then loses the first answer, as a network failure would."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def create_issue(
        self, issue: CreateJiraIssueInput, idempotency_key: str
    ) -> CreateJiraIssueOutput:
        self.calls += 1
        created = await super().create_issue(issue, idempotency_key)
        if self.calls == 1:
            raise ConnectionError("the connection to Jira was reset before it answered")
        return created


@pytest.fixture(scope="module")
async def nexus_ready(dev_env: WorkflowEnvironment) -> WorkflowEnvironment:
    await ensure_nexus_setup(dev_env.client)
    # Imported here, not by the first activity on the worker's event loop.
    await asyncio.to_thread(litellm_module)
    return dev_env


@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch) -> SampleJiraClient:
    """A fresh sample Jira for the IT worker of this test."""
    client = SampleJiraClient()
    monkeypatch.setattr(it_activities, "jira_client", client)
    return client


@asynccontextmanager
async def conversation(client: Client, task_queue: str | None = None) -> AsyncIterator[Handle]:
    """A conversation served by the real orchestrator worker on a task queue of its own."""
    task_queue = task_queue or f"approvals-{uuid.uuid4()}"
    async with orchestrator_worker(client, task_queue=task_queue):
        yield await client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=f"approvals-{uuid.uuid4()}", task_queue=task_queue
        )


async def ask(handle: Handle, text: str) -> WorkflowUpdateHandle[str]:
    return await handle.start_update(
        AgentWorkflow.send_message, text, wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )


async def decide(handle: Handle, call_id: str, approve: bool, note: str = "") -> None:
    decision = await decision_for(handle, call_id, approve, note)
    await handle.execute_update(AgentWorkflow.decide_tool_call, decision)


async def creating_workflows(it_client: Client) -> list[str]:
    query = "WorkflowType = 'CreateJiraIssueWorkflow'"
    return [w.id async for w in it_client.list_workflows(query)]


async def test_an_approved_call_creates_one_issue_and_a_denied_one_reaches_nothing(
    nexus_ready: WorkflowEnvironment, jira: SampleJiraClient
):
    client = nexus_ready.client
    it_client = await client_for(nexus_ready, IT.namespace)
    recorder = RecordNamespaces()
    before = set(await creating_workflows(it_client))
    async with (
        handler_workers(nexus_ready, recorder, finance=False),
        conversation(client) as handle,
    ):
        approved = await ask(handle, SLOW_LOGIN)
        [first] = await pending_calls(handle)
        await decide(handle, first.call_id, approve=True)
        created_answer = await approved.result()
        denied = await ask(handle, "Create a Jira issue in PROJ: the search is broken")
        [second] = await pending_calls(handle)
        await decide(handle, second.call_id, approve=False, note="duplicate of PROJ-100")
        denied_answer = await denied.result()
        events = (await handle.fetch_history()).events
    assert created_answer == (
        'I created PROJ-124 in PROJ: "The login page is slow" (priority Medium, '
        "https://jira.example.invalid/browse/PROJ-124; sample Jira (in memory, no Jira server "
        "configured))."
    )
    assert denied_answer == (
        "I did not create the Jira issue: the user denied this call: duplicate of PROJ-100"
    )
    assert [issue.summary for issue in jira.created.values()] == ["The login page is slow"]
    # Only the approved call went through the endpoint, and it ran in the IT namespace.
    assert recorder.calls == [("create_jira_issue", IT.namespace, IT.endpoint)]
    scheduled = [
        e.nexus_operation_scheduled_event_attributes.operation
        for e in events
        if e.event_type == EventType.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED
    ]
    assert scheduled == ["create_jira_issue"]
    new = set(await creating_workflows(it_client)) - before
    # The handler workflow's id is the idempotency key the sample Jira recorded.
    assert new == set(jira.created)
    [workflow_id] = new
    assert workflow_id.startswith("jira-create-PROJ-")


async def test_the_it_side_retries_its_activity_and_still_creates_the_issue_once(
    nexus_ready: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    flaky = FlakyJira()
    monkeypatch.setattr(it_activities, "jira_client", flaky)
    client = nexus_ready.client
    it_client = await client_for(nexus_ready, IT.namespace)
    async with handler_workers(nexus_ready, RecordNamespaces(), finance=False):
        async with conversation(client) as handle:
            turn = await ask(handle, SLOW_LOGIN)
            [pending] = await pending_calls(handle)
            await decide(handle, pending.call_id, approve=True)
            answer = await turn.result()
        [workflow_id] = flaky.created
        events = (await it_client.get_workflow_handle(workflow_id).fetch_history()).events
    assert answer.startswith('I created PROJ-124 in PROJ: "The login page is slow"')
    assert flaky.calls == 2
    assert [issue.key for issue in flaky.created.values()] == ["PROJ-124"]
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert attempts == [2]  # the history records the last attempt that started


@pytest.mark.e2e  # the temporal CLI
async def test_the_wait_survives_an_orchestrator_restart_and_the_cli_can_decide(
    nexus_ready: WorkflowEnvironment, jira: SampleJiraClient
):
    client = nexus_ready.client
    task_queue = f"approvals-restart-{uuid.uuid4()}"
    async with handler_workers(nexus_ready, RecordNamespaces(), finance=False):
        async with conversation(client, task_queue) as handle:
            turn = await ask(handle, SLOW_LOGIN)
            [pending] = await pending_calls(handle)
        # No orchestrator worker at all now; then a new one, with an empty workflow cache.
        await asyncio.sleep(1)
        async with orchestrator_worker(client, task_queue=task_queue):
            [still_pending] = await pending_calls(handle)
            temporal = find_binary("temporal")
            assert temporal is not None
            decided = await asyncio.create_subprocess_exec(
                temporal,
                "workflow",
                "update",
                "execute",
                "--address",
                client.service_client.config.target_host,
                "--namespace",
                client.namespace,
                "--workflow-id",
                handle.id,
                "--name",
                "decide_tool_call",
                "--input",
                # What the Web UI's current details print: the call, its approval id and digest.
                json.dumps(
                    {
                        "call_id": pending.call_id,
                        "approve": True,
                        "approval_id": pending.approval_id,
                        "digest": pending.digest,
                    }
                ),
                "--output",
                "json",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(decided.communicate(), 60)
            answer = await turn.result()
    # The same call, still waiting. Workflow time on replay is the recorded task's start time,
    # which can differ by milliseconds from the time the live task saw, so compare it loosely.
    times = {"asked_at", "expires_at"}
    assert still_pending.model_dump(exclude=times) == pending.model_dump(exclude=times)
    assert abs(still_pending.asked_at - pending.asked_at) < timedelta(seconds=1)
    assert still_pending.expires_at - still_pending.asked_at == timedelta(minutes=10)
    assert decided.returncode == 0, err.decode()
    assert json.loads(out)["result"] == {
        "call_id": pending.call_id,
        "tool": "create_jira_issue",
        "approved": True,
    }, out.decode()
    assert answer.startswith('I created PROJ-124 in PROJ: "The login page is slow"')
    assert len(jira.created) == 1


async def test_approved_arguments_that_jira_would_refuse_fail_fast_and_create_nothing(
    nexus_ready: WorkflowEnvironment, jira: SampleJiraClient
):
    client = nexus_ready.client
    it_client = await client_for(nexus_ready, IT.namespace)
    bad: dict[str, object] = {"project": "PROJ", "summary": "Slow login", "priority": "P1"}
    llm = ScriptedLLM(tools_then_answer(call("create_jira_issue", bad, "c1")))
    before = set(await creating_workflows(it_client))
    task_queue = f"approvals-{uuid.uuid4()}"
    async with (
        handler_workers(nexus_ready, RecordNamespaces(), finance=False),
        orchestrator_worker(
            client,
            task_queue=task_queue,
            activities=[llm.plan_next_action, execute_tool, check_endpoints],
        ),
    ):
        handle = await client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=f"approvals-{uuid.uuid4()}", task_queue=task_queue
        )
        turn = await ask(handle, "create a badly prioritised issue")
        await pending_calls(handle)
        await decide(handle, "c1", approve=True)
        answer = await turn.result()
    assert answer == (
        "Error: the create_jira_issue tool failed: 'P1' is not a Jira priority: use one of "
        "Highest, High, Medium, Low, Lowest"
    )
    # Non-retryable: the answer is the handler's error, not the operation's timeout.
    assert jira.created == {}
    assert set(await creating_workflows(it_client)) == before


# --- The IT side's checks, without a server --------------------------------------------------


async def test_the_sample_jira_creates_once_per_idempotency_key():
    jira = SampleJiraClient()
    issue = issue_fields(CreateJiraIssueInput(project="proj", summary="Slow login"))
    first = await jira.create_issue(issue, "key-1")
    again = await jira.create_issue(issue, "key-1")
    other = await jira.create_issue(issue, "key-2")
    assert (first.key, again.key, other.key) == ("PROJ-124", "PROJ-124", "PROJ-125")
    assert list(jira.created) == ["key-1", "key-2"]


def test_issue_fields_normalise():
    issue = issue_fields(
        CreateJiraIssueInput(
            project=" ops ", summary="  VPN\n is   down ", description=" x ", priority="high"
        )
    )
    assert issue == CreateJiraIssueInput(
        project="OPS", summary="VPN is down", description="x", priority="High"
    )


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"summary": "  "}, "the issue summary is empty: give a one-line title"),
        (
            {"summary": "x" * 256},
            "the summary has 256 characters; Jira allows 255: put the details in the description",
        ),
        (
            {"priority": "P1"},
            "'P1' is not a Jira priority: use one of Highest, High, Medium, Low, Lowest",
        ),
        ({"project": "PROJ-1"}, "'PROJ-1' is an issue key, not a project key: use 'PROJ'"),
    ],
)
def test_issue_fields_refuse_what_jira_would_refuse(fields: dict[str, str], error: str):
    issue = CreateJiraIssueInput.model_validate({"project": "PROJ", "summary": "s"} | fields)
    with pytest.raises(InvalidToolArguments) as refused:
        issue_fields(issue)
    assert str(refused.value) == error


class SlowJira(SampleJiraClient):
    """Creates the issue at once, then answers only after the caller stopped waiting (`release`)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def create_issue(
        self, issue: CreateJiraIssueInput, idempotency_key: str
    ) -> CreateJiraIssueOutput:
        created = await super().create_issue(issue, idempotency_key)
        async with asyncio.timeout(60):
            await self.release.wait()
        return created


async def test_a_write_whose_outcome_is_unknown_says_so_and_is_keyed_by_the_approval(
    nexus_ready: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    jira = SlowJira()
    monkeypatch.setattr(it_activities, "jira_client", jira)
    client = nexus_ready.client
    # A project of its own: the IT side may finish this call after the test (see SlowJira), and
    # must not take the next PROJ number from another test's Jira.
    issue: dict[str, object] = {"project": "SLOW", "summary": "Slow login"}
    llm = ScriptedLLM(tools_then_answer(call("create_jira_issue", issue, "c1")))
    task_queue = f"approvals-{uuid.uuid4()}"
    async with (
        handler_workers(nexus_ready, RecordNamespaces(), finance=False),
        orchestrator_worker(
            client,
            task_queue=task_queue,
            activities=[llm.plan_next_action, execute_tool, check_endpoints],
        ),
    ):
        handle = await client.start_workflow(
            AgentWorkflow.run,
            # The caller gives up after 5 s; Jira answers only after that, having created the
            # issue at once.
            AgentInput(config=AgentConfig(nexus_timeout_seconds=5)),
            id=f"approvals-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        turn = await ask(handle, "create an issue")
        [pending] = await pending_calls(handle)
        await decide(handle, "c1", approve=True)
        answer = await turn.result()
        jira.release.set()
        # The IT side finishes before its worker stops: a call cut off by the shutdown would be
        # retried by the next test module's IT worker, and create this issue in its Jira.
        key = hashlib.sha256(f"{handle.id}/{pending.approval_id}".encode()).hexdigest()[:32]
        it_client = await client_for(nexus_ready, IT.namespace)
        async with asyncio.timeout(60):
            await it_client.get_workflow_handle(f"jira-create-SLOW-{key}").result()
    assert answer.startswith(
        "Error: create_jira_issue: outcome unknown: check SLOW before trying again (it may have "
        "been done; "
    ), answer
    # The key is the conversation and the approval: the same approved call, however often it is
    # sent (a retried or re-run Nexus operation has a new request id), finds the same issue.
    print(f"\nanswer: {answer}")
    assert list(jira.created) == [f"jira-create-SLOW-{key}"]


def test_the_creation_key_is_the_callers_key_not_the_request_id():
    def context(request_id: str, headers: dict[str, str]) -> Any:
        return SimpleNamespace(request_id=request_id, headers=headers)

    same = [context(f"request-{n}", {"Idempotency-Key": "conv-1/2.1.0"}) for n in range(2)]
    keys = {creation_key(ctx) for ctx in same}
    assert keys == {hashlib.sha256(b"conv-1/2.1.0").hexdigest()[:32]}
    # Without the header (an older caller), the Nexus request id, as before.
    assert creation_key(context("request-9", {})) == "request-9"

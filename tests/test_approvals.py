"""Tool approval on the time-skipping server: approve, deny, timeout, validation, continue-as-new.

The LLM is scripted, and `create_jira_issue` keeps its catalog entry (name, input model,
`requires_approval`) but runs as a local stand-in, so these tests exercise the workflow's
approval logic alone; `test_approvals_e2e.py` sends approved calls to the real IT namespace.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.contrib.workflow_streams import PollInput, PollResult, WorkflowStreamClient
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from app.agent.models import AgentConfig, AgentResult, Message, ToolRequest, ToolResult
from app.agent.stream.events import (
    EVENT_TYPE,
    EVENTS_TOPIC,
    ApprovalDecided,
    ApprovalRequested,
    TurnAnswered,
)
from app.agent.stream.workflow_side import MAX_OPEN_POLLS, POLL_UPDATE
from app.agent.tools.activity import execute_tool
from app.agent.tools.approvals import (
    ToolDecision,
    ToolDecisionResult,
    call_digest,
    describe_call,
)
from app.agent.tools.catalog import TOOLS, Tool
from app.agent.workflow import AgentWorkflow
from app.it.service import CreateJiraIssueInput
from tests.doubles import (
    AgentHarness,
    ScriptedLLM,
    call,
    decision_for,
    history,
    pending_calls,
    says,
    tools_then_answer,
)

ISSUE: dict[str, object] = {
    "project": "PROJ",
    "summary": "The login page is slow",
    "priority": "High",
}

Handle = WorkflowHandle[AgentWorkflow, AgentResult]


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[CreateJiraIssueInput]]:
    """`create_jira_issue` as a local stand-in that records the issues it "creates"."""
    issues: list[CreateJiraIssueInput] = []

    def create(issue: CreateJiraIssueInput) -> str:
        issues.append(issue)
        return json.dumps({"key": f"{issue.project}-{123 + len(issues)}"})

    real = TOOLS["create_jira_issue"]
    assert real.requires_approval
    stand_in = Tool(real.name, real.input_model, function=create, requires_approval=True)
    monkeypatch.setitem(TOOLS, "create_jira_issue", stand_in)
    yield issues


async def start_turn(handle: Handle, text: str):  # type: ignore[no-untyped-def]
    return await handle.start_update(
        AgentWorkflow.send_message, text, wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )


async def decide(handle: Handle, call_id: str, approve: bool, note: str = "") -> ToolDecisionResult:
    decision = await decision_for(handle, call_id, approve, note)
    return await handle.execute_update(AgentWorkflow.decide_tool_call, decision)


async def current_details(handle: Handle) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def test_an_approved_call_runs_and_the_llm_reads_its_result(
    time_skipping_env: WorkflowEnvironment, created: list[CreateJiraIssueInput]
):
    llm = ScriptedLLM(tools_then_answer(call("create_jira_issue", ISSUE, "c1")))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        turn = await start_turn(handle, "Create a Jira issue in PROJ: the login page is slow")
        [pending] = await pending_calls(handle)
        status = await handle.query(AgentWorkflow.get_status)
        details = await current_details(handle)
        assert created == []  # nothing runs before the decision
        assert await decide(handle, "c1", approve=True) == ToolDecisionResult(
            call_id="c1", tool="create_jira_issue", approved=True
        )
        answer = await turn.result()
        after = await handle.query(AgentWorkflow.get_pending_approvals)
        details_after = await current_details(handle)
        status_after = await handle.query(AgentWorkflow.get_status)
        recorded = await handle.fetch_history()
    # The wait, the decision and the details replay deterministically.
    await Replayer(
        workflows=[AgentWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(recorded)
    assert (pending.call_id, pending.tool) == ("c1", "create_jira_issue")
    # The arguments as the model wrote them: the IT handler validates them, not the workflow.
    assert pending.arguments == ISSUE
    # Turn 1, step 1, the step's first call; the digest names the tool and its arguments.
    assert (pending.approval_id, pending.digest) == (
        "1.1.0",
        call_digest("create_jira_issue", ISSUE),
    )
    assert pending.expires_at - pending.asked_at == timedelta(minutes=10)
    assert status.state == "waiting_for_approval"
    assert status.detail == (
        'waiting for your approval: create_jira_issue(project=PROJ, summary="The login page is '
        'slow", priority=High)'
    )
    assert details.startswith("**Waiting for approval** (1 tool call(s))")
    assert "`/approve c1`" in details and f"--workflow-id {handle.id}" in details
    assert answer == '{"key": "PROJ-124"}'
    assert [issue.summary for issue in created] == ["The login page is slow"]
    assert after.calls == []
    # Nothing waits: the details name the conversation, its first message and the model.
    assert status_after.model is not None
    assert details_after == (
        "**First message**: `Create a Jira issue in PROJ: the login page is slow`\n\n"
        f"**Model**: `{status_after.model}`"
    )


async def test_a_denied_call_does_not_run_and_the_llm_reads_the_note(
    time_skipping_env: WorkflowEnvironment, created: list[CreateJiraIssueInput]
):
    llm = ScriptedLLM(tools_then_answer(call("create_jira_issue", ISSUE, "c1")))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        turn = await start_turn(handle, "Create a Jira issue")
        await pending_calls(handle)
        result = await decide(handle, "c1", approve=False, note="  not   before the release ")
        answer = await turn.result()
        messages = await history(handle)
    assert result.approved is False
    assert answer == "Not run: the user denied this call: not before the release"
    assert messages[2] == Message(
        role="tool", tool_call_id="c1", name="create_jira_issue", content=answer
    )
    assert created == []


async def test_no_decision_within_the_timeout_counts_as_a_denial(
    time_skipping_env: WorkflowEnvironment, created: list[CreateJiraIssueInput]
):
    llm = ScriptedLLM(tools_then_answer(call("create_jira_issue", ISSUE, "c1")))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig(approval_timeout_seconds=90))
    async with harness.worker():
        handle = await harness.start()
        turn = await start_turn(handle, "Create a Jira issue")
        await pending_calls(handle)
        await time_skipping_env.sleep(timedelta(seconds=91))
        answer = await turn.result()
        with pytest.raises(WorkflowUpdateFailedError) as late:
            await decide(handle, "c1", approve=True)
        status = await handle.query(AgentWorkflow.get_status)
    assert answer == "Not run: nobody approved this call within 90 seconds, so it counts as denied."
    assert isinstance(late.value.cause, ApplicationError)
    assert late.value.cause.message == (
        "tool call 'c1' was already timed out, which counts as denied"
    )
    assert status.state == "idle"
    assert created == []


async def test_other_calls_of_the_step_run_while_one_waits_for_approval(
    time_skipping_env: WorkflowEnvironment, created: list[CreateJiraIssueInput]
):
    ran: list[str] = []

    @activity.defn(name="execute_tool")
    async def recording_tool(request: ToolRequest) -> ToolResult:
        ran.append(request.name)
        return await execute_tool(request)

    calls = (
        call("calculator", {"expression": "6 * 7"}, "calc"),
        call("create_jira_issue", ISSUE, "jira"),
    )
    llm = ScriptedLLM(tools_then_answer(*calls))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker(recording_tool):
        handle = await harness.start()
        turn = await start_turn(handle, "Calculate 6 * 7 and create a Jira issue")
        [pending] = await pending_calls(handle)
        deadline = time.monotonic() + 10
        while ran != ["calculator"]:
            assert time.monotonic() < deadline, ran
            await asyncio.sleep(0.05)
        still_pending = await pending_calls(handle)
        await decide(handle, "jira", approve=True)
        answer = await turn.result()
    assert pending.call_id == "jira"
    assert still_pending == [pending]
    assert ran == ["calculator", "create_jira_issue"]
    assert answer == '42 | {"key": "PROJ-124"}'


@pytest.mark.parametrize(
    ("decision", "error"),
    [
        (
            ToolDecision(call_id="nope", approve=True),
            "no tool call 'nope' is waiting for approval (waiting: '1.1.0')",
        ),
        (
            ToolDecision(call_id="c1", approve=False, note="x" * 1001),
            "the note has 1,001 characters; the limit is 1,000",
        ),
    ],
)
async def test_the_validator_rejects_decisions_that_cannot_apply(
    time_skipping_env: WorkflowEnvironment,
    created: list[CreateJiraIssueInput],
    decision: ToolDecision,
    error: str,
):
    llm = ScriptedLLM(tools_then_answer(call("create_jira_issue", ISSUE, "c1")))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        turn = await start_turn(handle, "Create a Jira issue")
        await pending_calls(handle)
        with pytest.raises(WorkflowUpdateFailedError) as rejected:
            await handle.execute_update(AgentWorkflow.decide_tool_call, decision)
        still_pending = await pending_calls(handle)
        await decide(handle, "c1", approve=True)
        with pytest.raises(WorkflowUpdateFailedError) as twice:
            await decide(handle, "c1", approve=False)
        await turn.result()
        events = (await handle.fetch_history()).events
    assert isinstance(rejected.value.cause, ApplicationError)
    assert (rejected.value.cause.type, rejected.value.cause.message) == (
        "InvalidToolDecision",
        error,
    )
    assert [p.call_id for p in still_pending] == ["c1"]
    assert isinstance(twice.value.cause, ApplicationError)
    assert twice.value.cause.message == "tool call 'c1' was already approved"
    # Rejected decisions never reached the history: one message and one decision did.
    accepted = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert accepted == ["send_message", "decide_tool_call"]
    assert len(created) == 1


async def test_a_pending_call_holds_off_continue_as_new_and_stays_pending(
    time_skipping_env: WorkflowEnvironment, created: list[CreateJiraIssueInput]
):
    def script(messages: list[Message]) -> Message:
        if messages[-1].role == "tool":
            return says(f"result: {messages[-1].content}")
        if "Jira" in (messages[-1].content or ""):
            return Message(role="assistant", tool_calls=[call("create_jira_issue", ISSUE, "c1")])
        return says("hello")

    llm = ScriptedLLM(script)
    llm.gate = asyncio.Event()
    # Two turns fill the run: the run continues as new as soon as its handlers have finished.
    harness = AgentHarness(time_skipping_env, llm, AgentConfig(max_turns_per_run=2))
    async with harness.worker():
        handle = await harness.start()
        first_run = (await handle.describe()).run_id
        greeting = await start_turn(handle, "hi")
        jira = await start_turn(handle, "Create a Jira issue")
        llm.gate.set()
        assert await greeting.result() == "hello"
        # The run is full now, but the second turn waits for a decision inside its handler.
        await pending_calls(handle)
        await time_skipping_env.sleep(timedelta(minutes=5))
        [pending] = await pending_calls(handle)
        run_while_pending = (await handle.describe()).run_id
        await decide(handle, "c1", approve=True)
        answer = await jira.result()
        deadline = time.monotonic() + 15
        while (latest := await handle.describe()).run_id == first_run:
            assert time.monotonic() < deadline, "the run did not continue as new"
            await asyncio.sleep(0.1)
        after = await handle.query(AgentWorkflow.get_pending_approvals)
        messages = await history(handle)
    assert run_while_pending == first_run
    assert pending.call_id == "c1"
    assert answer == 'result: {"key": "PROJ-124"}'
    assert latest.run_id != first_run
    assert after.calls == []
    # The new run carried the turn that was approved, tool result included.
    assert [m.role for m in messages][-3:] == ["assistant", "tool", "assistant"]


def test_describe_call_keeps_whole_arguments_within_the_limit():
    arguments = {"project": "PROJ", "summary": "The login page is slow", "priority": "High"}
    assert describe_call("create_jira_issue", arguments) == (
        'create_jira_issue(project=PROJ, summary="The login page is slow", priority=High)'
    )
    assert (
        describe_call("create_jira_issue", arguments, 40) == "create_jira_issue(project=PROJ, ...)"
    )
    # A first argument too long to fit whole is cut inside, and says so.
    assert describe_call("t", {"x": "y" * 50}, 20) == 't(x="yyyyyyyyyyy...)'


async def stream_events(handle: Handle, answers: int) -> list[object]:
    """The conversation's stream events up to its `answers`-th answer."""
    stream = WorkflowStreamClient.create(handle._client, handle.id)
    events: list[object] = []
    async for item in stream.subscribe([EVENTS_TOPIC], 0, result_type=EVENT_TYPE):
        events.append(item.data)
        if sum(isinstance(e, TurnAnswered) for e in events) == answers:
            return events
    return events


async def test_a_stale_or_repeated_decision_cannot_approve_a_call_it_did_not_name(
    time_skipping_env: WorkflowEnvironment, created: list[CreateJiraIssueInput]
):
    # The model reuses the call id "c1" in turn 2, for another issue (as the offline model does).
    other: dict[str, object] = {"project": "PROD", "summary": "DELETE the production project"}
    turns: Iterator[dict[str, object]] = iter([ISSUE, other])
    llm = ScriptedLLM(tools_then_answer(call("create_jira_issue", next(turns), "c1")))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        first = await start_turn(handle, "Create a Jira issue")
        [shown] = await pending_calls(handle)
        decision = await decision_for(handle, "c1", approve=True)
        once = await handle.execute_update(
            AgentWorkflow.decide_tool_call, decision, id="decision-1"
        )
        # The same decision again, with the same Update id: answered once, the same way.
        again = await handle.execute_update(
            AgentWorkflow.decide_tool_call, decision, id="decision-1"
        )
        await first.result()
        llm.script = tools_then_answer(call("create_jira_issue", next(turns), "c1"))
        second = await start_turn(handle, "Create another")
        [waiting] = await pending_calls(handle)
        refusals = []
        # A late copy of turn 1's decision (new Update id), a forged id with the old digest, and
        # a bare call id: each refused, and the call still waits.
        for stale in (
            decision,
            decision.model_copy(update={"approval_id": waiting.approval_id}),
            ToolDecision(call_id="c1", approve=True),
        ):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(AgentWorkflow.decide_tool_call, stale)
            assert isinstance(refused.value.cause, ApplicationError)
            refusals.append(refused.value.cause.message)
        still = await pending_calls(handle)
        await decide(handle, "c1", approve=False, note="never")
        denied = await second.result()
        events = await stream_events(handle, answers=2)
    assert (shown.approval_id, waiting.approval_id) == ("1.1.0", "2.1.0")
    assert (
        once == again == ToolDecisionResult(call_id="c1", tool="create_jira_issue", approved=True)
    )
    assert refusals == [
        "approval '1.1.0' was already approved",
        "approval '2.1.0' is for create_jira_issue(project=PROD, summary=\"DELETE the production "
        f'project") (digest {waiting.digest}); the decision names digest {shown.digest!r}, so it '
        "was made for another call: nothing was decided",
        "tool call 'c1' now waits as approval '2.1.0': a decision must name its approval_id and "
        "digest (get_pending_approvals shows them)",
    ]
    assert still == [waiting]
    assert denied == "Not run: the user denied this call: never"
    assert [issue.project for issue in created] == ["PROJ"]
    approvals = [e for e in events if isinstance(e, ApprovalRequested | ApprovalDecided)]
    assert approvals == [
        ApprovalRequested(
            turn_id=approvals[0].turn_id,
            approval_id="1.1.0",
            tool="create_jira_issue",
            arguments=json.dumps(ISSUE),
            digest=shown.digest,
        ),
        ApprovalDecided(turn_id=approvals[0].turn_id, approval_id="1.1.0", outcome="approved"),
        ApprovalRequested(
            turn_id=approvals[2].turn_id,
            approval_id="2.1.0",
            tool="create_jira_issue",
            arguments=json.dumps(other),
            digest=waiting.digest,
        ),
        ApprovalDecided(turn_id=approvals[2].turn_id, approval_id="2.1.0", outcome="denied"),
    ]


async def test_queued_messages_and_watchers_leave_an_update_slot_for_the_decision(
    dev_env: WorkflowEnvironment, created: list[CreateJiraIssueInput]
):
    llm = ScriptedLLM(
        lambda messages: (
            says(f"answer to {messages[-1].content}")
            if messages[-1].role == "user" and messages[-1].content != "Create a Jira issue"
            else tools_then_answer(call("create_jira_issue", ISSUE, "c1"))(messages)
        )
    )
    config = AgentConfig()
    harness = AgentHarness(dev_env, llm, config)
    async with harness.worker():
        handle = await harness.start()
        first = await start_turn(handle, "Create a Jira issue")
        await pending_calls(handle)
        queued = [
            await start_turn(handle, f"queued {n}") for n in range(config.max_queued_messages - 1)
        ]
        with pytest.raises(WorkflowUpdateFailedError) as busy:
            await handle.execute_update(AgentWorkflow.send_message, "one too many")
        # Clients following the events: each open poll holds a slot until the next event.
        polls = [
            await handle.start_update(
                POLL_UPDATE,
                PollInput(topics=[EVENTS_TOPIC], from_offset=1_000_000),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=PollResult,
            )
            for _ in range(MAX_OPEN_POLLS)
        ]
        with pytest.raises(WorkflowUpdateFailedError) as watched:
            await handle.execute_update(
                POLL_UPDATE,
                PollInput(topics=[EVENTS_TOPIC], from_offset=1_000_000),
                result_type=PollResult,
            )
        # Eight Updates in flight: the decision still gets a slot, and every turn is answered.
        decided = await decide(handle, "c1", approve=True)
        answers = [await first.result()] + [await turn.result() for turn in queued]
        await handle.signal(AgentWorkflow.end_conversation)
        await handle.result()  # ending releases the polls
        released = [await poll.result() for poll in polls]
    assert isinstance(busy.value.cause, ApplicationError)
    assert (busy.value.cause.type, busy.value.cause.message) == (
        "ConversationBusy",
        "4 messages are already waiting for their answers: send this one once an answer has come",
    )
    assert isinstance(watched.value.cause, ApplicationError)
    assert watched.value.cause.type == "StreamBusy"
    assert decided.approved
    assert answers == ['{"key": "PROJ-124"}'] + [f"answer to queued {n}" for n in range(3)]
    assert all(result.items == [] for result in released)

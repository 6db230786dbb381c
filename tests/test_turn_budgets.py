"""Turns that always end: budgets for tool calls and bytes, a deadline for the LLM, no poisoning.

On the time-skipping server with a scripted LLM: a step that asks for far too many tools with
large results, an LLM that never answers, and an LLM that fails whenever it sees a given message.
Each turn ends with an answer, no workflow task fails, and the next message works.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from app.agent.models import AgentConfig, Message, PlanInput, PlanOutput, ToolRequest
from app.agent.tools.activity import execute_tool
from app.agent.tools.catalog import TOOLS
from app.agent.workflow import AgentWorkflow
from tests.doubles import AgentHarness, ScriptedLLM, asks, call, history, says, send


def failed_workflow_tasks(events: Sequence[HistoryEvent]) -> list[HistoryEvent]:
    return [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]


async def test_a_step_asking_for_140_large_tool_calls_ends_with_an_answer(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    # Every echo returns 16,000 characters (two bytes each in UTF-8): 140 of them would make the
    # next planning input about 4.5 MB, over the 2 MB payload limit.
    big_echo = dataclasses.replace(TOOLS["echo"], function=lambda args: "é" * 16_000)
    monkeypatch.setitem(TOOLS, "echo", big_echo)

    def script(messages: list[Message]) -> Message:
        if messages[-1].content == "and now?":
            return says("fine")
        return asks(*(call("echo", {"message": str(i)}) for i in range(140)))

    llm = ScriptedLLM(script)
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        answer = await send(handle, "echo everything")
        messages = await history(handle)
        assert await send(handle, "and now?") == "fine"
        events = (await handle.fetch_history()).events
    results = [m.content or "" for m in messages if m.role == "tool"]
    assert answer.startswith("I stopped: this turn grew too large to go on")
    assert answer.endswith("Try asking for less at once.")
    # Every call of every step got a result: 20 ran, the other 120 were refused.
    assert len(results) == 140 * (len(llm.inputs) - 1)
    assert results[20] == (
        "Error: not run: at most 20 tool calls run per step; ask for this one again in the next "
        "step if you still need it."
    )
    # The budget, plus the notes that say what was cut.
    assert sum(len(r.encode()) for r in results[:20]) < 202_000
    assert results[7].endswith("[this turn's tool results reached their budget of 200,000 bytes]")
    assert results[140] == (
        "Error: not run: this turn's tool results have reached their budget of 200,000 bytes; "
        "answer with the results you have."
    )
    assert max(len(plan.model_dump_json().encode()) for plan in llm.inputs) <= 256_000
    assert failed_workflow_tasks(events) == []


def test_error_results_of_local_tools_are_capped():
    request = ToolRequest(
        name="calculator",
        arguments='{"expression": "' + "1+" * 20_000 + '"}',
        max_result_chars=1_000,
    )
    result = asyncio.run(execute_tool(request))
    assert result.content.startswith("Error: cannot calculate '1+1+1+")
    assert result.content.endswith(" more characters cut]")
    assert len(result.content) < 1_100


async def test_an_llm_that_keeps_timing_out_ends_the_turn_at_the_deadline(
    time_skipping_env: WorkflowEnvironment,
):
    attempts: list[int] = []

    @activity.defn(name="plan_next_action")
    async def never_answers(input: PlanInput) -> PlanOutput:
        # What a provider that keeps timing out looks like to the workflow.
        attempts.append(activity.info().attempt)
        raise ApplicationError("the LLM provider did not answer in time", type="LLMTimeout")

    # Eight attempts, 1 s apart, without a deadline; real time, since a shared time-skipping
    # server skips time only while no other test's work is outstanding.
    config = AgentConfig(
        llm_retry_initial_seconds=1, llm_retry_max_seconds=1, llm_deadline_seconds=2.5
    )
    harness = AgentHarness(time_skipping_env, ScriptedLLM(lambda m: says("unused")), config)
    async with Worker(
        harness.client,
        task_queue=harness.task_queue,
        workflows=[AgentWorkflow],
        activities=[never_answers, execute_tool],
    ):
        handle = await harness.start()
        answer = await send(handle, "hello?")
    assert answer == (
        "Sorry, I could not get an answer from the language model: it did not answer within "
        "2.5 seconds (last error: the LLM provider did not answer in time)."
    )
    assert attempts in ([1, 2], [1, 2, 3])


@pytest.mark.parametrize("poison_in", ["user message", "tool result"])
async def test_a_failed_turn_does_not_poison_the_next_ones(
    time_skipping_env: WorkflowEnvironment, poison_in: str
):
    def script(messages: list[Message]) -> Message:
        # Like a provider whose template breaks on one message, every time it is sent.
        if any("poison" in (m.content or "") for m in messages):
            raise ApplicationError("the LLM provider had a server error", non_retryable=True)
        if messages[-1].content == "use a tool":
            return asks(call("echo", {"message": "poison"}))
        return says(f"fine: {messages[-1].content}")

    llm = ScriptedLLM(script)
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        failed = await send(handle, "poison" if poison_in == "user message" else "use a tool")
        answers = [await send(handle, "hello"), await send(handle, "again")]
        messages = await history(handle)
    assert failed == (
        "Sorry, I could not get an answer from the language model: "
        "the LLM provider had a server error."
    )
    assert answers == ["fine: hello", "fine: again"]
    # The user still sees the failed turn; the LLM never saw it again.
    assert [(m.role, m.content) for m in messages[:2]] == [
        ("user", "poison" if poison_in == "user message" else "use a tool"),
        ("assistant", failed),
    ]
    assert [m.content for m in llm.inputs[-1].messages] == ["hello", "fine: hello", "again"]


async def test_a_turn_too_large_to_plan_is_not_carried_into_the_next_run(
    time_skipping_env: WorkflowEnvironment,
):
    def script(messages: list[Message]) -> Message:
        if messages[-1].content == "huge":
            return asks(call("echo", {"message": "a" * 300_000}))
        return says(f"fine, after {len(messages)} message(s)")

    config = AgentConfig(max_turns_per_run=1)
    harness = AgentHarness(time_skipping_env, ScriptedLLM(script), config)
    async with harness.worker():
        handle = await harness.start()
        answer = await send(handle, "huge")
        while (
            await harness.client.get_workflow_handle(handle.id).describe()
        ).run_id == handle.result_run_id:
            await asyncio.sleep(0.05)
        view = await handle.query(AgentWorkflow.get_history)
        assert await send(handle, "next") == "fine, after 1 message(s)"
    assert answer.startswith("I stopped: this turn grew too large to go on")
    assert (view.messages, view.earlier_messages) == ([], 4)

"""The agent loop on the time-skipping test server, with the LLM replaced by scripted test doubles.

The doubles are registered under the real activity names, so the workflow code under test is the
production code: its loop, history, parallel tool calls, step bound, queueing, validation,
failure handling and continue-as-new.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from app.agent.models import (
    AgentConfig,
    Message,
    PlanInput,
    PlanOutput,
    ToolCall,
    ToolRequest,
    ToolResult,
)
from app.agent.tools.activity import execute_tool
from app.agent.workflow import AgentWorkflow
from tests.doubles import (
    AgentHarness,
    ScriptedLLM,
    asks,
    call,
    history,
    says,
    send,
    tools_then_answer,
)


async def test_single_tool_turn_keeps_native_chat_history(time_skipping_env: WorkflowEnvironment):
    calc = call("calculator", {"expression": "15 * 23"}, "c1")
    llm = ScriptedLLM(tools_then_answer(calc))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        assert await send(handle, "Calculate 15 * 23") == "345"
        messages = await history(handle)
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1].tool_calls == [calc]
    assert (messages[2].tool_call_id, messages[2].name, messages[2].content) == (
        "c1",
        "calculator",
        "345",
    )
    # The second planning call saw the tool result, in the chat format providers expect.
    assert llm.inputs[1].messages[-1].to_chat() == {
        "role": "tool",
        "tool_call_id": "c1",
        "name": "calculator",
        "content": "345",
    }


async def test_multi_turn_conversation_remembers_earlier_turns(
    time_skipping_env: WorkflowEnvironment,
):
    def script(messages: list[Message]) -> Message:
        users = [m.content for m in messages if m.role == "user"]
        return says(f"turn {len(users)}: {' / '.join(str(u) for u in users)}")

    harness = AgentHarness(time_skipping_env, ScriptedLLM(script), AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        assert await send(handle, "first") == "turn 1: first"
        assert await send(handle, "  second  ") == "turn 2: first / second"


async def test_parallel_tool_calls_run_concurrently(time_skipping_env: WorkflowEnvironment):
    started: list[str] = []
    both_started = asyncio.Event()

    @activity.defn(name="execute_tool")
    async def barrier_tool(request: ToolRequest) -> ToolResult:
        # Each call waits for the other to start: run one after the other, this times out.
        started.append(request.name)
        if len(started) == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), timeout=5)
        return ToolResult(content=f"{request.name} done")

    calls = (call("calculator", {"expression": "1+1"}, "a"), call("echo", {"message": "hi"}, "b"))
    harness = AgentHarness(time_skipping_env, ScriptedLLM(tools_then_answer(*calls)), AgentConfig())
    async with harness.worker(barrier_tool):
        handle = await harness.start()
        answer = await send(handle, "two things at once")
        messages = await history(handle)
    assert answer == "calculator done | echo done"
    assert sorted(started) == ["calculator", "echo"]
    assert [m.tool_call_id for m in messages if m.role == "tool"] == ["a", "b"]


async def test_step_bound_ends_a_runaway_loop(time_skipping_env: WorkflowEnvironment):
    llm = ScriptedLLM(lambda messages: asks(call("echo", {"message": "again"})))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig(max_steps_per_turn=3))
    async with harness.worker():
        handle = await harness.start()
        answer = await send(handle, "loop forever")
        messages = await history(handle)
    assert answer.startswith("I stopped after 3 steps")
    assert len(llm.inputs) == 3
    assert messages[-1] == Message.assistant(answer)
    assert [m.role for m in messages].count("tool") == 3


async def test_messages_sent_during_a_turn_are_queued_and_answered_in_order(
    time_skipping_env: WorkflowEnvironment,
):
    llm = ScriptedLLM(lambda messages: says(f"answer to {messages[-1].content}"))
    llm.gate = asyncio.Event()
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        updates = []
        for text in ("one", "two", "three"):
            updates.append(
                await handle.start_update(
                    AgentWorkflow.send_message, text, wait_for_stage=WorkflowUpdateStage.ACCEPTED
                )
            )
        status = await handle.query(AgentWorkflow.get_status)
        assert (status.state, status.queued_messages) == ("thinking", 2)
        llm.gate.set()
        answers = [await update.result() for update in updates]
        messages = await history(handle)
    assert answers == ["answer to one", "answer to two", "answer to three"]
    assert [m.content for m in messages] == [
        "one",
        "answer to one",
        "two",
        "answer to two",
        "three",
        "answer to three",
    ]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("", "the message is empty"),
        ("   \n\t", "the message is empty"),
        ("x" * 101, "the message has 101 characters; the limit is 100"),
    ],
)
async def test_validator_rejects_bad_messages_without_touching_history(
    time_skipping_env: WorkflowEnvironment, message: str, error: str
):
    llm = ScriptedLLM(lambda messages: says("ok"))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig(max_message_chars=100))
    async with harness.worker():
        handle = await harness.start()
        assert await send(handle, "hello") == "ok"
        with pytest.raises(WorkflowUpdateFailedError) as failure:
            await send(handle, message)
        assert isinstance(failure.value.cause, ApplicationError)
        assert failure.value.cause.message == error
        assert [m.content for m in await history(handle)] == ["hello", "ok"]
    assert len(llm.inputs) == 1


async def test_end_conversation_finishes_in_flight_turn_then_rejects_messages(
    time_skipping_env: WorkflowEnvironment,
):
    llm = ScriptedLLM(lambda messages: says("done"))
    llm.gate = asyncio.Event()
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        update = await handle.start_update(
            AgentWorkflow.send_message, "last words", wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        await handle.signal(AgentWorkflow.end_conversation)
        with pytest.raises(WorkflowUpdateFailedError) as failure:
            await send(handle, "too late")
        assert "this conversation has ended" in str(failure.value.cause)
        llm.gate.set()
        assert await update.result() == "done"
        result = await handle.result()
    assert (result.turns, result.messages) == (1, 2)


async def test_llm_failure_answers_the_user_and_keeps_the_conversation(
    time_skipping_env: WorkflowEnvironment,
):
    def script(messages: list[Message]) -> Message:
        if messages[-1].content == "break":
            raise ApplicationError(
                "the LLM provider rejected the API key",
                type="LLMAuthenticationError",
                non_retryable=True,
            )
        return says("fine")

    llm = ScriptedLLM(script)
    harness = AgentHarness(time_skipping_env, llm, AgentConfig())
    async with harness.worker():
        handle = await harness.start()
        answer = await send(handle, "break")
        assert "the LLM provider rejected the API key" in answer
        assert await send(handle, "and now?") == "fine"
        roles = [m.role for m in await history(handle)]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert len(llm.inputs) == 2  # non-retryable: exactly one attempt


async def test_retryable_llm_failures_are_retried_until_the_turn_completes(
    time_skipping_env: WorkflowEnvironment,
):
    attempts: list[int] = []

    @activity.defn(name="plan_next_action")
    async def flaky(input: PlanInput) -> PlanOutput:
        attempts.append(activity.info().attempt)
        if len(attempts) < 3:
            raise ApplicationError("the LLM provider is rate limiting us", type="LLMRateLimited")
        return PlanOutput(message=says("recovered"), model="scripted")

    config = AgentConfig(llm_retry_initial_seconds=0.01, llm_retry_max_seconds=0.02)
    harness = AgentHarness(time_skipping_env, ScriptedLLM(lambda m: says("unused")), config)
    async with Worker(
        harness.client,
        task_queue=harness.task_queue,
        workflows=[AgentWorkflow],
        activities=[flaky, execute_tool],
    ):
        handle = await harness.start()
        assert await send(handle, "hello") == "recovered"
    assert attempts == [1, 2, 3]


@pytest.mark.parametrize(
    ("bad_call", "expected"),
    [
        (call("launch_rockets", {}), "Error: there is no tool named 'launch_rockets'"),
        (
            call("calculator", "{not json"),
            "Error: invalid arguments for calculator: arguments: Invalid JSON",
        ),
        (
            call("calculator", {"expr": "1+1"}),
            "Error: invalid arguments for calculator: expression: Field required",
        ),
        (call("calculator", {"expression": "9**9**9**9"}), "Error: cannot calculate '9**9**9**9'"),
    ],
)
async def test_garbage_tool_calls_become_tool_results_and_the_turn_goes_on(
    time_skipping_env: WorkflowEnvironment, bad_call: ToolCall, expected: str
):
    harness = AgentHarness(
        time_skipping_env, ScriptedLLM(tools_then_answer(bad_call)), AgentConfig()
    )
    async with harness.worker():
        handle = await harness.start()
        answer = await send(handle, "do something odd")
    assert answer.startswith(expected), answer


async def test_tool_results_are_capped(time_skipping_env: WorkflowEnvironment):
    big = call("echo", {"message": "y" * 5000})
    harness = AgentHarness(
        time_skipping_env,
        ScriptedLLM(tools_then_answer(big)),
        AgentConfig(max_tool_result_chars=100),
    )
    async with harness.worker():
        handle = await harness.start()
        answer = await send(handle, "echo a lot")
    assert answer == "y" * 100 + "\n[... 4,900 more characters cut]"


async def test_continue_as_new_carries_the_conversation(time_skipping_env: WorkflowEnvironment):
    def script(messages: list[Message]) -> Message:
        return says(f"saw {sum(m.role == 'user' for m in messages)} user messages")

    config = AgentConfig(max_turns_per_run=2, planner_window_chars=10_000)
    harness = AgentHarness(time_skipping_env, ScriptedLLM(script), config)
    async with harness.worker():
        handle = await harness.start()
        first_run = (await handle.describe()).run_id
        answers = [await send(handle, f"message {i}") for i in range(5)]
        view = await handle.query(AgentWorkflow.get_history)
        status = await handle.query(AgentWorkflow.get_status)
        latest_run = (await harness.client.get_workflow_handle(handle.id).describe()).run_id
    # The planner's window survived each continue-as-new: the LLM always saw every turn.
    assert answers == [f"saw {i + 1} user messages" for i in range(5)]
    assert latest_run != first_run
    assert status.turns == 5
    assert view.earlier_messages + len(view.messages) == 10


async def test_planner_sees_a_bounded_window_of_long_conversations(
    time_skipping_env: WorkflowEnvironment,
):
    llm = ScriptedLLM(lambda messages: says("z" * 40))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig(planner_window_chars=200))
    async with harness.worker():
        handle = await harness.start()
        for i in range(10):
            await send(handle, f"message {i} " + "x" * 30)
    sizes = [len(plan.messages) for plan in llm.inputs]
    assert sizes[0] == 1
    assert max(sizes) <= 5  # two whole earlier turns and the current message fit in 200 chars
    assert llm.inputs[-1].messages[-1].content == "message 9 " + "x" * 30
    assert llm.inputs[-1].messages[0].role == "user"

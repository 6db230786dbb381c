"""The orchestrator: a durable, multi-turn agent loop as a Temporal workflow.

Each user message arrives as the Update `send_message` and runs one turn: a hand-written `while`
loop that asks the LLM for the next action (`plan_next_action`), runs the tools it asks for (local
tools through `execute_tool`, remote tools through Nexus endpoints, several at once when the LLM
asks for several), feeds the results back, and stops when the LLM answers or the step bound is
reached. The workflow keeps the conversation history itself; turns are served one at a time in
arrival order; the run continues as new before its event history grows too large.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, NexusOperationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from app.agent.activities import execute_tool, plan_next_action
    from app.agent.conversation import planner_window
    from app.agent.event_stream import ConversationEvents
    from app.agent.llm_client import worker_model
    from app.agent.models import (
        AgentInput,
        AgentResult,
        AgentStatus,
        ConversationView,
        Message,
        PlanInput,
        ToolCall,
        ToolRequest,
        cap_text,
    )
    from app.agent.tool_catalog import TOOLS, Tool
    from app.core.errors import failure_message
    from app.core.names import AGENT_WORKFLOW_NAME


def validation_summary(err: ValidationError) -> str:
    """A pydantic validation error in one line, without documentation links."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
        for e in err.errors(include_url=False)
    )


@workflow.defn(name=AGENT_WORKFLOW_NAME)
class AgentWorkflow:
    """One conversation with the agent."""

    @workflow.init
    def __init__(self, input: AgentInput) -> None:
        self._config = input.config
        self._history: list[Message] = list(input.history)
        self._earlier_messages = input.earlier_messages
        self._turns = input.turns_before_this_run
        self._turns_this_run = 0
        self._ending = False
        # asyncio.Lock is FIFO: messages that arrive during a turn wait for it, in order.
        self._turn_lock = asyncio.Lock()
        self._status = AgentStatus(turns=self._turns)
        # Live progress for clients, on a Workflow Stream that follows the conversation's runs.
        self._events = ConversationEvents(input.stream_state)
        # One Nexus client per endpoint, created once per run from the catalog's contracts.
        self._nexus_clients: dict[str, workflow.NexusClient[Any]] = {
            tool.route.endpoint: workflow.create_nexus_client(
                service=tool.route.service, endpoint=tool.route.endpoint
            )
            for tool in TOOLS.values()
            if tool.route is not None
        }

    @workflow.run
    async def run(self, input: AgentInput) -> AgentResult:
        await workflow.wait_condition(lambda: self._ending or self._run_is_full())
        # Queued and running turns finish first: their senders are waiting for the answers.
        await workflow.wait_condition(self._no_turn_in_flight)
        # Stream subscribers are Update handlers too: release them, then let every handler end.
        self._events.detach()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not self._ending:
            carried = self._window()
            workflow.logger.info("Continuing as new after %d turns", self._turns_this_run)
            workflow.continue_as_new(
                AgentInput(
                    history=carried,
                    config=self._config,
                    turns_before_this_run=self._turns,
                    earlier_messages=self._earlier_messages + len(self._history) - len(carried),
                    stream_state=self._events.state(),
                )
            )
        return AgentResult(turns=self._turns, messages=self._earlier_messages + len(self._history))

    @workflow.update
    async def send_message(self, message: str) -> str:
        """Run one turn for the user's message and return the agent's answer."""
        self._status.queued_messages += 1
        async with self._turn_lock:
            self._status.queued_messages -= 1
            self._events.turn_started(self._turns + 1)
            answer = await self._run_turn(message.strip())
            self._events.answered(answer, self._status.model)
        self._turns += 1
        self._turns_this_run += 1
        self._status.turns = self._turns
        return answer

    @send_message.validator
    def validate_message(self, message: str) -> None:
        """Reject a message before it is written to history."""
        if self._ending:
            raise ValueError("this conversation has ended: start a new one")
        if not message.strip():
            raise ValueError("the message is empty")
        if len(message) > self._config.max_message_chars:
            raise ValueError(
                f"the message has {len(message):,} characters; "
                f"the limit is {self._config.max_message_chars:,}"
            )

    @workflow.signal
    def end_conversation(self) -> None:
        """End the conversation once the turns already sent have been answered."""
        self._ending = True

    @workflow.query
    def get_history(self) -> ConversationView:
        """The conversation so far (messages before the last continue-as-new are counted)."""
        return ConversationView(messages=self._history, earlier_messages=self._earlier_messages)

    @workflow.query
    def get_status(self) -> AgentStatus:
        """What the agent is doing right now, and the model of the worker that answers."""
        # Read from the worker process, not workflow state: queries never enter history.
        return self._status.model_copy(update={"worker_model": worker_model()})

    def _window(self) -> list[Message]:
        config = self._config
        return planner_window(
            self._history, config.planner_window_chars, config.planner_window_messages
        )

    def _no_turn_in_flight(self) -> bool:
        return not self._turn_lock.locked() and self._status.queued_messages == 0

    def _run_is_full(self) -> bool:
        return (
            self._turns_this_run >= self._config.max_turns_per_run
            or workflow.info().is_continue_as_new_suggested()
        )

    async def _run_turn(self, text: str) -> str:
        """The agent loop for one user message: plan, act, repeat until there is an answer."""
        self._history.append(Message.user(text))
        answer: str | None = None
        steps = 0
        while answer is None and steps < self._config.max_steps_per_turn:
            steps += 1
            self._events.planning_step(steps)
            reply = await self._plan_next_action()
            self._history.append(reply)
            if reply.tool_calls:
                self._history.extend(await self._run_tools(reply.tool_calls))
            else:
                answer = reply.content or ""
        if answer is None:
            answer = (
                f"I stopped after {steps} steps without reaching an answer. "
                "Try asking for less at once, or rephrase the request."
            )
            self._history.append(Message.assistant(answer))
        self._set_status("idle")
        return answer

    async def _plan_next_action(self) -> Message:
        self._set_status("thinking")
        window = self._window()
        try:
            plan = await workflow.execute_activity(
                plan_next_action,
                PlanInput(messages=window, turn_id=self._events.turn_id),
                start_to_close_timeout=timedelta(seconds=self._config.llm_timeout_seconds),
                heartbeat_timeout=timedelta(seconds=self._config.llm_heartbeat_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=self._config.llm_retry_initial_seconds),
                    maximum_interval=timedelta(seconds=self._config.llm_retry_max_seconds),
                    maximum_attempts=self._config.llm_max_attempts,
                ),
            )
        except ActivityError as err:
            # The turn ends with an explanation; the conversation stays usable.
            workflow.logger.warning("plan_next_action failed: %s", failure_message(err))
            return Message.assistant(
                f"Sorry, I could not get an answer from the language model: {failure_message(err)}."
            )
        self._status.model = plan.model
        return plan.message

    async def _run_tools(self, calls: list[ToolCall]) -> list[Message]:
        """Run every tool call of one step concurrently; results keep the calls' order."""
        names = ", ".join(self._describe_call(call) for call in calls)
        self._set_status("calling_tools", f"calling {names}")
        return list(await asyncio.gather(*(self._run_tool(call) for call in calls)))

    def _describe_call(self, call: ToolCall) -> str:
        tool = TOOLS.get(call.name)
        if tool is not None and tool.route is not None:
            return f"{call.name} via {tool.route.endpoint}"
        return call.name

    async def _run_tool(self, call: ToolCall) -> Message:
        """One tool call; any failure becomes a tool result the LLM can read and act on."""
        tool = TOOLS.get(call.name)
        endpoint = tool.route.endpoint if tool is not None and tool.route is not None else None
        self._events.tool_started(call.id, call.name, call.arguments, endpoint)
        started = workflow.time()
        if tool is None:
            content = f"Error: there is no tool named {call.name!r}. Tools: {', '.join(TOOLS)}."
        else:
            try:
                args = tool.input_model.model_validate_json(call.arguments or "{}")
            except ValidationError as err:
                content = f"Error: invalid arguments for {call.name}: {validation_summary(err)}"
            else:
                if tool.route is None:
                    content = await self._run_local_tool(tool, args)
                else:
                    content = await self._run_nexus_tool(tool, args)
        self._events.tool_finished(call.id, call.name, content, started)
        return Message.tool_result(call, content)

    async def _run_local_tool(self, tool: Tool, args: BaseModel) -> str:
        request = ToolRequest(
            name=tool.name,
            arguments=args.model_dump_json(),
            max_result_chars=self._config.max_tool_result_chars,
        )
        timeout = timedelta(seconds=self._config.local_tool_timeout_seconds)
        retry = RetryPolicy(maximum_attempts=3)
        try:
            if self._config.local_tools_as_local_activities:
                result = await workflow.execute_local_activity(
                    execute_tool, request, start_to_close_timeout=timeout, retry_policy=retry
                )
            else:
                result = await workflow.execute_activity(
                    execute_tool, request, start_to_close_timeout=timeout, retry_policy=retry
                )
        except ActivityError as err:
            return f"Error: the {tool.name} tool failed: {failure_message(err)}"
        return result.content

    async def _run_nexus_tool(self, tool: Tool, args: BaseModel) -> str:
        assert tool.route is not None
        timeout = self._config.nexus_timeout_seconds
        try:
            output = await self._nexus_clients[tool.route.endpoint].execute_operation(
                tool.route.operation,
                args,
                schedule_to_close_timeout=timedelta(seconds=timeout),
            )
        except NexusOperationError as err:
            if _caused_by_timeout(err):
                return (
                    f"Error: the {tool.name} tool is unavailable: {tool.route.endpoint} did not "
                    f"answer within {timeout:g} seconds."
                )
            return f"Error: the {tool.name} tool failed: {failure_message(err)}"
        content = output.model_dump_json() if isinstance(output, BaseModel) else str(output)
        # Local tools cap their results inside the activity; remote ones are capped here.
        return cap_text(content, self._config.max_tool_result_chars)

    def _set_status(self, state: str, detail: str = "") -> None:
        self._status.state = state  # type: ignore[assignment]
        self._status.detail = detail or {"thinking": "thinking", "idle": ""}.get(state, "")


def _caused_by_timeout(err: BaseException) -> bool:
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, TimeoutError):
            return True
        current = current.__cause__
    return False

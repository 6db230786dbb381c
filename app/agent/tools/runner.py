"""Running the tool calls of one planning step, for the workflow, within the turn's budgets.

Workflow code (deterministic, run inside the agent workflow): local tools run as (local)
activities, remote tools as Nexus operations, MCP servers' tools through `mcp_toolbox`, all calls
of a step at once. Every call gets exactly one tool result, as providers require: a failure, a
call over the per-step limit, a result over the turn's byte budget and a Nexus endpoint that does
not exist each become a result the LLM reads, so no tool can end the conversation or wedge it.

The workflow routes a call by the tool's name only (patch `route-by-name`): it checks that the
arguments are a JSON object and leaves their validation to the activity or the Nexus handler, so a
team that changes its input model changes ordinary code, not what an open conversation replays.
A catalog change that changes commands (a rename, a new route, `requires_approval`) needs a
`workflow.patched` guard, as `Tool.approval_patch` shows. MCP servers' tools that write wait for
the same approval, under the same ids and digests. A write whose outcome is unknown (no
answer in time) says so, and its idempotency key (the conversation and the approval id) makes a
retry of the same approved call create nothing new.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import nexusrpc
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    NexusOperationError,
    TimeoutError,
    TimeoutType,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from app.agent.metrics import count_tool_call
    from app.agent.models import (
        AgentConfig,
        EndpointCheck,
        Message,
        ToolCall,
        ToolRequest,
        cap_bytes,
        cap_text,
        utf8_size,
    )
    from app.agent.stream.workflow_side import ConversationEvents
    from app.agent.tools.activity import execute_tool, validation_summary
    from app.agent.tools.approvals import APPROVAL_IDS_PATCH, Approvals, approval_id
    from app.agent.tools.catalog import TOOLS, Tool
    from app.agent.tools.endpoints import SETUP_COMMAND, check_endpoints
    from app.agent.tools.legacy_contracts import LEGACY_INPUT_MODELS
    from app.agent.tools.mcp_toolbox import MCPToolbox
    from app.agent.tools.mcp_tools import MCPToolSpec
    from app.core.errors import failure_message
    from app.it.service import IDEMPOTENCY_KEY_HEADER

# Patches (see the README's "Changing the agent loop safely"): the workflow routes by name and no
# longer validates arguments; and a call that waits for approval asks `check_endpoints` after its
# wait, not before it (an endpoint deleted during the wait would fail every workflow task).
ROUTE_BY_NAME_PATCH = "route-by-name"
NO_STEP_ENDPOINT_CHECK_PATCH = "no-step-endpoint-check"


@dataclass
class TurnSpending:
    """What one turn has used of its budgets so far."""

    steps: int = 0
    # The turn's number in the conversation (carried across continue-as-new): approval ids.
    turn: int = 0
    # Planning inputs and tool results: what the turn has written to the event history.
    bytes: int = 0
    tool_result_bytes: int = 0
    tools: list[str] = field(default_factory=list)  # the tools called, in order


def json_arguments(call: ToolCall) -> dict[str, Any] | str:
    """The call's arguments as a JSON object, or the error result the LLM reads instead."""
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError as err:
        return f"Error: invalid arguments for {call.name}: arguments: Invalid JSON ({err})"
    if not isinstance(arguments, dict):
        return f"Error: invalid arguments for {call.name}: arguments: expected a JSON object"
    return arguments


def definite_failure(err: BaseException) -> bool:
    """Whether a failed call surely did nothing: its arguments were refused before it ran."""
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, ApplicationError) and current.type == "InvalidToolArguments":
            return True
        if isinstance(current, nexusrpc.HandlerError) and (
            current.type == nexusrpc.HandlerErrorType.BAD_REQUEST
        ):
            return True
        current = current.__cause__
    return False


def timeout_type(err: BaseException) -> TimeoutType | None:
    """The type of the timeout in an error's cause chain, or None if it holds none."""
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, TimeoutError):
            return current.type
        current = current.__cause__
    return None


def describe_call(call: ToolCall) -> str:
    """A call as the status line shows it: its name, and the endpoint of a remote tool."""
    tool = TOOLS.get(call.name)
    if tool is not None and tool.route is not None:
        return f"{call.name} via {tool.route.endpoint}"
    return call.name


def call_summary(name: str, arguments: dict[str, Any], limit: int = 80) -> str:
    """A tool call as the Web UI names its step: `calculator 15 * 23`, `stock_price AAPL`."""
    values = " ".join(str(value) for value in arguments.values())
    text = f"{name} {values}".strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ToolRunner:
    """Runs the tool calls of a step; one per workflow run."""

    def __init__(
        self,
        config: AgentConfig,
        approvals: Approvals,
        events: ConversationEvents,
    ) -> None:
        self._config = config
        self._approvals = approvals
        self._events = events
        # MCP servers' tools: listed at the start of each run (none in runs recorded before).
        self.mcp = MCPToolbox(config)
        # One Nexus client per endpoint, created once per run from the catalog's contracts.
        self._nexus_clients: dict[str, workflow.NexusClient[Any]] = {
            tool.route.endpoint: workflow.create_nexus_client(
                service=tool.route.service, endpoint=tool.route.endpoint
            )
            for tool in TOOLS.values()
            if tool.route is not None
        }

    def split(self, calls: list[ToolCall], spent: TurnSpending) -> tuple[list[ToolCall], str]:
        """The calls that will run, and the tool result every other call gets instead."""
        config = self._config
        budget = config.max_tool_result_bytes_per_turn
        if spent.tool_result_bytes >= budget:
            return [], (
                f"Error: not run: this turn's tool results have reached their budget of "
                f"{budget:,} bytes; answer with the results you have."
            )
        return calls[: config.max_tool_calls_per_step], (
            f"Error: not run: at most {config.max_tool_calls_per_step} tool calls run per step; "
            "ask for this one again in the next step if you still need it."
        )

    async def run(self, calls: list[ToolCall], spent: TurnSpending) -> list[Message]:
        """Run the step's calls concurrently; the results keep the calls' order."""
        run, refusal = self.split(calls, spent)
        spent.tools += [call.name for call in run]
        if workflow.patched(NO_STEP_ENDPOINT_CHECK_PATCH):
            # Calls that wait for approval check their endpoint after the wait, not before it.
            at_once = [c for c in run if not ((t := TOOLS.get(c.name)) and self._needs_approval(t))]
            missing = await self._missing_endpoints(at_once)
        else:
            missing = await self._missing_endpoints(run)  # histories from before the patch
        contents = await asyncio.gather(
            *(self._run_with_events(call, missing, spent, index) for index, call in enumerate(run))
        )
        results = [
            Message.tool_result(call, self._within_budget(content, spent))
            for call, content in zip(run, contents, strict=True)
        ]
        return results + [Message.tool_result(call, refusal) for call in calls[len(run) :]]

    def _within_budget(self, content: str, spent: TurnSpending) -> str:
        """A tool result, cut to what is left of the turn's budget for tool results."""
        budget = self._config.max_tool_result_bytes_per_turn
        # The whole result is in the event history already, whatever the LLM gets to see.
        spent.bytes += utf8_size(content)
        left = max(budget - spent.tool_result_bytes, 0)
        if utf8_size(content) > left:
            content = cap_bytes(content, left) + (
                f"\n[this turn's tool results reached their budget of {budget:,} bytes]"
            )
        spent.tool_result_bytes += utf8_size(content)
        return content

    async def _missing_endpoints(self, calls: list[ToolCall]) -> set[str]:
        """The Nexus endpoints these calls need that do not exist on the server.

        Checked right before the calls, in the same workflow task: a call to an endpoint that
        does not exist fails the task, and the retried task then checks again. Since the patch
        `no-step-endpoint-check` only a call that waited for approval asks: its endpoint may have
        gone during the wait, and its decision must not be lost in a failing task.
        """
        wanted = list(
            dict.fromkeys(
                tool.route.endpoint
                for call in calls
                if (tool := TOOLS.get(call.name)) is not None and tool.route is not None
            )
        )
        if not wanted:
            return set()
        try:
            result = await workflow.execute_local_activity(
                check_endpoints,
                EndpointCheck(endpoints=wanted),
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=RetryPolicy(maximum_attempts=2),
            )
        except ActivityError as err:
            # A server that does not let us list endpoints: call them and let Nexus tell.
            workflow.logger.warning("check_endpoints failed: %s", failure_message(err))
            return set()
        return set(result.missing)

    async def _run_with_events(
        self, call: ToolCall, missing_endpoints: set[str], spent: TurnSpending, index: int
    ) -> str:
        """One tool call, announced on the conversation's stream as it starts and finishes."""
        tool = TOOLS.get(call.name)
        endpoint = tool.route.endpoint if tool is not None and tool.route is not None else None
        self._events.tool_started(call.id, call.name, call.arguments, endpoint)
        started = workflow.time()
        content = await self._run_tool(call, missing_endpoints, spent, index)
        count_tool_call(call.name, content)
        self._events.tool_finished(call.id, call.name, content, started)
        return content

    async def _run_tool(
        self, call: ToolCall, missing_endpoints: set[str], spent: TurnSpending, index: int
    ) -> str:
        """One tool call; any failure becomes a tool result the LLM can read and act on."""
        tool = TOOLS.get(call.name)
        if tool is None and (spec := self.mcp.get(call.name)) is not None:
            return await self._run_mcp_tool(call, spec, spent, index)
        if tool is None:
            names = [*TOOLS, *(spec.name for spec in self.mcp.specs)]
            return f"Error: there is no tool named {call.name!r}. Tools: {', '.join(names)}."
        arguments = self._arguments(call, tool)
        if isinstance(arguments, str):
            return arguments
        key = ""
        if self._needs_approval(tool):
            # Waits, durably, for a person's decision; the other calls of the step run meanwhile.
            refusal, key = await self._approval(call, arguments, spent, index)
            if refusal is not None:
                return refusal
            if key and tool.route is not None:
                missing_endpoints = await self._missing_endpoints([call])
        if tool.route is None:
            return await self._run_local_tool(tool, arguments)
        if tool.route.endpoint in missing_endpoints:
            return (
                f"Error: the {tool.name} tool is unavailable: the Nexus endpoint "
                f"{tool.route.endpoint} does not exist on the server (`{SETUP_COMMAND}` "
                "creates it)."
            )
        return await self._run_nexus_tool(tool, arguments, key)

    async def _run_mcp_tool(
        self, call: ToolCall, spec: MCPToolSpec, spent: TurnSpending, index: int
    ) -> str:
        """A tool of an MCP server: its arguments are checked by the server itself."""
        arguments = json_arguments(call)
        if isinstance(arguments, str):
            return arguments
        if spec.requires_approval:
            # The same durable wait, ids and digests as the catalog's writing tools.
            refusal, _ = await self._approval(call, arguments, spent, index)
            if refusal is not None:
                return refusal
        return await self.mcp.call(spec, arguments)

    async def _approval(
        self, call: ToolCall, arguments: dict[str, Any], spent: TurnSpending, index: int
    ) -> tuple[str | None, str]:
        """Wait for a person's decision: the refusal the LLM reads (None if approved), and the
        approval id ("" for waits recorded before the patch `approval-ids`)."""
        timeout = timedelta(seconds=self._config.approval_timeout_seconds)
        key = ""
        if workflow.patched(APPROVAL_IDS_PATCH):
            key = approval_id(spent.turn, spent.steps, index)
        return await self._approvals.refusal(call, arguments, timeout, key), key

    @staticmethod
    def _arguments(call: ToolCall, tool: Tool) -> dict[str, Any] | str:
        """The call's arguments, or the error result; validated here only before the patch."""
        if workflow.patched(ROUTE_BY_NAME_PATCH):
            return json_arguments(call)
        # Histories from before the patch: validated as then, against frozen copies of the models.
        try:
            model = LEGACY_INPUT_MODELS.get(call.name, tool.input_model)
            args = model.model_validate_json(call.arguments or "{}")
        except ValidationError as err:
            return f"Error: invalid arguments for {call.name}: {validation_summary(err)}"
        return args.model_dump(mode="json")

    @staticmethod
    def _needs_approval(tool: Tool) -> bool:
        """Whether calls of `tool` wait for a person; a later `requires_approval` is patched."""
        if not tool.requires_approval:
            return False
        return tool.approval_patch is None or workflow.patched(tool.approval_patch)

    async def _run_local_tool(self, tool: Tool, arguments: dict[str, Any]) -> str:
        request = ToolRequest(
            name=tool.name,
            arguments=json.dumps(arguments),
            max_result_chars=self._config.max_tool_result_chars,
        )
        timeout = timedelta(seconds=self._config.local_tool_timeout_seconds)
        retry = RetryPolicy(maximum_attempts=3)
        summary = call_summary(tool.name, arguments)
        try:
            if self._config.local_tools_as_local_activities:
                result = await workflow.execute_local_activity(
                    execute_tool,
                    request,
                    start_to_close_timeout=timeout,
                    retry_policy=retry,
                    summary=summary,
                )
            else:
                result = await workflow.execute_activity(
                    execute_tool,
                    request,
                    start_to_close_timeout=timeout,
                    retry_policy=retry,
                    summary=summary,
                )
        except ActivityError as err:
            return f"Error: the {tool.name} tool failed: {failure_message(err)}"
        return result.content

    async def _run_nexus_tool(self, tool: Tool, arguments: dict[str, Any], key: str) -> str:
        """A remote call; the handler validates `arguments` against the team's own model."""
        assert tool.route is not None
        timeout = self._config.nexus_timeout_seconds
        headers = {}
        if key:
            # The same approved call always carries the same key, whatever Nexus request it is.
            headers[IDEMPOTENCY_KEY_HEADER] = f"{workflow.info().workflow_id}/{key}"
        try:
            output = await self._nexus_clients[tool.route.endpoint].execute_operation(
                tool.route.operation,
                arguments,
                schedule_to_close_timeout=timedelta(seconds=timeout),
                headers=headers or None,
                summary=call_summary(tool.name, arguments),
            )
        except NexusOperationError as err:
            if tool.requires_approval and not definite_failure(err):
                # A write may have landed although no answer came: a retry could write twice.
                target = arguments.get(tool.target_argument or "") or tool.route.endpoint
                return (
                    f"Error: {tool.name}: outcome unknown: check {target} before trying again "
                    f"(it may have been done; {failure_message(err)})."
                )
            if timeout_type(err) is not None:
                return (
                    f"Error: the {tool.name} tool is unavailable: {tool.route.endpoint} did not "
                    f"answer within {timeout:g} seconds."
                )
            return f"Error: the {tool.name} tool failed: {failure_message(err)}"
        content = output.model_dump_json() if isinstance(output, BaseModel) else str(output)
        # Local tools cap their results inside the activity; remote ones are capped here.
        return cap_text(content, self._config.max_tool_result_chars)

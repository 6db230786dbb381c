"""The workflow's MCP tools: listed once per run through `temporalio-mcp`, called as activities.

Workflow code. At the start of each run the workflow asks the worker which MCP servers it is
configured with (the activity `mcp_servers`), then lists each server's tools with
`TemporalMCPClient.list_tools()`, an activity: the tool lists are in the run's history, so a
server that adds or removes tools never changes what a replay sees. A server that cannot be
listed is tried again at the start of each later turn of the run. Each call is a `call_tool()`
activity with a per-attempt timeout, a deadline and a bounded number of attempts (the
integration's activities do not heartbeat, and its default retries are unbounded); a tool that
writes gets one attempt, as a retry could write twice. Every failure becomes a tool result the
LLM reads: `isError`, a JSON-RPC error (unknown tool, invalid params), or a server that is dead,
hung or missing ("unavailable").
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from temporalio.mcp import TemporalMCPClient

    from app.agent.models import AgentConfig, cap_text
    from app.agent.tools.mcp_tools import (
        MCPServerInfo,
        MCPServerList,
        MCPServersQuery,
        MCPToolSpec,
        result_text,
        tool_specs,
    )
    from app.core.errors import failure_message

# The id of the `workflow.patched` branch that lists MCP tools: runs recorded before it list none.
MCP_PATCH = "mcp-tools"


def _cause(err: BaseException) -> BaseException:
    """The innermost cause of an activity failure (the server's error, or the timeout)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


class MCPToolbox:
    """This run's MCP servers and tools; empty in runs recorded before MCP tools existed."""

    def __init__(self, config: AgentConfig) -> None:
        self._config = config
        self._enabled = workflow.patched(MCP_PATCH)
        self._servers: dict[str, MCPServerInfo] | None = None
        self._unlisted: list[str] = []
        self._tried_in_turn = -1
        self._tools: dict[str, MCPToolSpec] = {}

    @property
    def specs(self) -> list[MCPToolSpec]:
        """The tools to offer the LLM, server by server in configuration order."""
        return list(self._tools.values())

    def get(self, name: str) -> MCPToolSpec | None:
        return self._tools.get(name)

    async def ready(self, turn: int) -> list[MCPToolSpec]:
        """The run's tools: listed at its first planning step; a server that could not be listed
        is tried again once in each later turn."""
        if not self._enabled:
            return []
        if self._servers is None:
            self._servers = {server.name: server for server in await self._configured()}
            self._unlisted = list(self._servers)
        if self._unlisted and turn != self._tried_in_turn:
            await self.list_unlisted()
        self._tried_in_turn = turn
        return self.specs

    async def _configured(self) -> list[MCPServerInfo]:
        """The servers of the worker's configuration (the activity `mcp_servers`)."""
        try:
            # An activity, not a local one: a worker that lacks it (tests build their own) fails
            # it, and that failure is in the history too, so every replay takes the same path.
            found = await workflow.execute_activity(
                "mcp_servers",
                MCPServersQuery(),
                result_type=MCPServerList,
                start_to_close_timeout=timedelta(seconds=5),
                schedule_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
                summary="which MCP servers this worker is configured with",
            )
        except ActivityError as err:
            workflow.logger.info("No MCP servers: %s", failure_message(_cause(err)))
            return []
        return found.servers

    async def list_unlisted(self) -> None:
        """List the tools of the servers not listed yet in this run, all at once."""
        names, self._unlisted = self._unlisted, []
        listed = await asyncio.gather(*(self._list_server(name) for name in names))
        for name, specs in zip(names, listed, strict=True):
            if specs is None:
                self._unlisted.append(name)
                continue
            for spec in specs:
                if spec.name in self._tools:
                    workflow.logger.warning("MCP tool %s is listed twice: one kept", spec.name)
                    continue
                self._tools[spec.name] = spec
        # Keep the configuration's order, whichever server answered first.
        order = list(self._servers or {})
        self._tools = dict(
            sorted(self._tools.items(), key=lambda item: order.index(item[1].server))
        )

    async def _list_server(self, name: str) -> list[MCPToolSpec] | None:
        config = self._config
        client = TemporalMCPClient(
            name,
            cache_tools_list=False,
            activity_config={
                "start_to_close_timeout": timedelta(seconds=config.mcp_call_timeout_seconds),
                "schedule_to_close_timeout": timedelta(seconds=config.mcp_call_deadline_seconds),
                "retry_policy": RetryPolicy(maximum_attempts=2),
                "summary": f"list the tools of MCP server {name}",
            },
        )
        try:
            listed = await client.list_tools()
        except ActivityError as err:
            workflow.logger.warning(
                "MCP server %s is unavailable: %s", name, failure_message(_cause(err))
            )
            return None
        assert self._servers is not None
        return tool_specs(self._servers[name], listed.model_dump(mode="json"))

    async def call(self, spec: MCPToolSpec, arguments: dict[str, Any]) -> str:
        """Call one tool; its result, or the error, as the text the LLM reads."""
        config = self._config
        attempts = 1 if spec.requires_approval else config.mcp_max_attempts
        client = TemporalMCPClient(
            spec.server,
            activity_config={
                "start_to_close_timeout": timedelta(seconds=config.mcp_call_timeout_seconds),
                "schedule_to_close_timeout": timedelta(seconds=config.mcp_call_deadline_seconds),
                "retry_policy": RetryPolicy(
                    initial_interval=timedelta(seconds=0.5), maximum_attempts=attempts
                ),
                "summary": f"{spec.server}: {spec.tool}",
            },
        )
        try:
            result = await client.call_tool(spec.tool, arguments)
        except ActivityError as err:
            return failure_result(spec, err)
        text, is_error = result_text(result.model_dump(mode="json"))
        text = cap_text(text, config.max_tool_result_chars)
        if is_error:
            return f"Error: the {spec.name} tool reported an error: {text or 'no details'}"
        return text


def failure_result(spec: MCPToolSpec, err: ActivityError) -> str:
    """The tool result the LLM reads when a call of `spec` failed."""
    cause = _cause(err)
    if isinstance(cause, ApplicationError) and cause.type == "MCPProtocolError":
        # The server answered with a JSON-RPC error: the call itself was wrong.
        code = f" (JSON-RPC error {cause.details[0]})" if cause.details else ""
        message = cap_text(cause.message, 2_000)
        return f"Error: the {spec.name} tool refused the call{code}: {message}"
    # Dead, hung or missing: what the user should hear is that the tool is unavailable.
    reason = cap_text(failure_message(cause), 500)
    unavailable = (
        f"Error: the {spec.name} tool is unavailable: MCP server {spec.server} did not "
        f"answer ({reason})."
    )
    if spec.requires_approval:
        # A write may have landed although no answer came, and MCP has no idempotency key.
        return f"{unavailable} Outcome unknown: it may have been done; check before trying again."
    return f"{unavailable} It may work again in a later turn."

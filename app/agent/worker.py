"""The orchestrator worker's factories: the agent workflow with its tools, and the LLM calls.

The workflow, its local tools and the endpoint check poll the orchestrator's task queue; the
planning activity (`plan_next_action`, LiteLLM) polls a queue of its own (`LLM_TASK_QUEUE`), as in
Temporal's `workflow_streams` sample, so the two can run in separate processes and scale apart.
`orchestrator_worker.py`, the demo, the tests and the benchmark all build the workers here, so
they run the same thing. Tests pass extra `Worker` options (a task queue of their own, test
doubles): on any queue but the orchestrator's, one worker serves both parts, as the workflow then
plans on its own queue (`app.core.names.llm_task_queue`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, Literal

from temporalio.client import Client
from temporalio.worker import Worker

from app.agent.llm.activity import plan_next_action
from app.agent.llm.client import LLMSettings, ModelChoice, announce_worker_model, choose_model
from app.agent.tools.activity import execute_tool
from app.agent.tools.endpoints import EndpointsMissing, check_endpoints, require_endpoints
from app.agent.tools.mcp_config import MCPConfig, load_config, mcp_plugin, servers_activity
from app.agent.workflow import AgentWorkflow
from app.core.names import LLM_TASK_QUEUE, ORCHESTRATOR, llm_task_queue
from app.core.sandbox import SandboxedRunner
from app.core.setup import search_attribute_problem

Part = Literal["workflows", "llm"]
PARTS: tuple[Part, ...] = ("workflows", "llm")
# In-flight LLM calls get this long to finish when the worker is stopped.
LLM_GRACEFUL_SHUTDOWN = timedelta(seconds=30)


class Workers:
    """Several workers of one process, started and stopped together (`async with`)."""

    def __init__(self, workers: Sequence[Worker]) -> None:
        self.workers = list(workers)
        self._stack = contextlib.AsyncExitStack()

    @property
    def client(self) -> Client:
        return self.workers[0].client

    @property
    def task_queue(self) -> str:
        """The task queues polled, for log lines."""
        return " and ".join(worker.task_queue for worker in self.workers)

    async def __aenter__(self) -> Workers:
        for worker in self.workers:
            await self._stack.enter_async_context(worker)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()


def workflow_worker(client: Client, mcp_config: MCPConfig | None = None, **options: Any) -> Worker:
    """The agent workflow with its local-tool, endpoint-check and MCP activities, for the MCP
    servers of `mcp_config` (default: the file `MCP_SERVERS_FILE` names)."""
    settings: dict[str, Any] = {
        "task_queue": ORCHESTRATOR.task_queue,
        "workflows": [AgentWorkflow],
        "activities": [execute_tool, check_endpoints],
        # The SDK's sandbox, without re-entering it for every payload (app/core/sandbox.py).
        "workflow_runner": SandboxedRunner(),
        # The local tools are quick; they get a moment to finish on shutdown.
        "graceful_shutdown_timeout": timedelta(seconds=5),
        # The SDK's own 2 MB check also counts the request an Update rejection echoes, so a
        # refused oversized message failed every workflow task of its conversation. Our own
        # payloads stay far below 2 MB through the byte budgets (AgentConfig, MAX_REPLY_BYTES).
        "disable_payload_error_limit": True,
    }
    settings |= options
    # The MCP servers come with the workflow's worker whatever activities a test passes: the
    # workflow asks `mcp_servers` at the start of every run, on its own task queue.
    mcp = mcp_config if mcp_config is not None else load_config()
    settings["activities"] = [*settings["activities"], servers_activity(mcp)]
    settings["plugins"] = [*settings.get("plugins", []), mcp_plugin(mcp)]
    return Worker(client, **settings)


def llm_worker(client: Client, **options: Any) -> Worker:
    """The planning activity (LiteLLM) on its own task queue."""
    settings: dict[str, Any] = {
        "task_queue": LLM_TASK_QUEUE,
        "activities": [plan_next_action],
        "graceful_shutdown_timeout": LLM_GRACEFUL_SHUTDOWN,
    }
    return Worker(client, **(settings | options))


def orchestrator_worker(
    client: Client, parts: Sequence[Part] = PARTS, **options: Any
) -> Worker | Workers:
    """The agent workflow with its LLM, local-tool, endpoint-check and MCP activities.

    On the orchestrator's own queue, `parts` chooses what this process runs (both by default,
    one `Workers`); on any other queue (tests), one worker runs everything. The option
    `mcp_config` (an `MCPConfig`) names the MCP servers of the workflows' worker.
    """
    # Clients learn the model from the worker (get_status), not from their own environment. Only
    # an offline model is named here: naming any other may import LiteLLM (seconds), which the
    # worker loads after it starts polling (`prepare_model` names it then).
    if LLMSettings.from_env().model.startswith("offline/"):
        announce_worker_model(choose_model().describe())
    task_queue = options.get("task_queue", ORCHESTRATOR.task_queue)
    mcp_config: MCPConfig | None = options.pop("mcp_config", None)
    if llm_task_queue(task_queue) == task_queue:
        settings: dict[str, Any] = {
            "activities": [plan_next_action, execute_tool, check_endpoints],
            "graceful_shutdown_timeout": LLM_GRACEFUL_SHUTDOWN,
        }
        return workflow_worker(client, mcp_config, **(settings | options))
    workers: list[Worker] = []
    if "workflows" in parts:
        workers.append(workflow_worker(client, mcp_config, **options))
    if "llm" in parts:
        workflow_only = {"workflows", "task_queue", "workflow_runner"}
        llm_options = {k: v for k, v in options.items() if k not in workflow_only}
        workers.append(llm_worker(client, **llm_options))
    return Workers(workers)


async def startup_problem(client: Client) -> str | None:
    """Why this worker cannot serve its namespace (missing endpoints or search attributes)."""
    if (problem := await search_attribute_problem(client)) is not None:
        return problem
    try:
        await require_endpoints(client)
    except EndpointsMissing as err:
        return str(err)
    return None


def prepare_model() -> ModelChoice:
    """Choose the model once LiteLLM is loaded; the offline model also loads its tokenizer."""
    choice = choose_model()
    announce_worker_model(choice.describe())
    if choice.is_offline:
        from app.agent.llm.offline_tokens import load_tokenizer

        load_tokenizer()
    return choice

"""The orchestrator worker's factory: the agent workflow with its LLM, tool and endpoint activities.

`orchestrator_worker.py`, the tests and the benchmark all build the worker here, so they run the
same thing. Tests pass extra `Worker` options (a task queue of their own, test doubles); the
benchmark passes tuning options.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from app.agent.llm.activity import plan_next_action
from app.agent.llm.client import LLMSettings, ModelChoice, announce_worker_model, choose_model
from app.agent.tools.activity import execute_tool
from app.agent.tools.endpoints import EndpointsMissing, check_endpoints, require_endpoints
from app.agent.workflow import AgentWorkflow
from app.core.names import ORCHESTRATOR
from app.core.sandbox import SandboxedRunner
from app.core.setup import search_attribute_problem


def orchestrator_worker(client: Client, **options: Any) -> Worker:
    """The agent workflow with its LLM, local-tool and endpoint-check activities."""
    # Clients learn the model from the worker (get_status), not from their own environment. Only
    # an offline model is named here: naming any other may import LiteLLM (seconds), which the
    # worker loads after it starts polling (`prepare_model` names it then).
    if LLMSettings.from_env().model.startswith("offline/"):
        announce_worker_model(choose_model().describe())
    settings: dict[str, Any] = {
        "task_queue": ORCHESTRATOR.task_queue,
        "workflows": [AgentWorkflow],
        "activities": [plan_next_action, execute_tool, check_endpoints],
        # The SDK's sandbox, without re-entering it for every payload (app/core/sandbox.py).
        "workflow_runner": SandboxedRunner(),
        # In-flight LLM calls get this long to finish when the worker is stopped.
        "graceful_shutdown_timeout": timedelta(seconds=30),
        # The SDK's own 2 MB check also counts the request an Update rejection echoes, so a
        # refused oversized message failed every workflow task of its conversation. Our own
        # payloads stay far below 2 MB through the byte budgets (AgentConfig, MAX_REPLY_BYTES).
        "disable_payload_error_limit": True,
    }
    return Worker(client, **(settings | options))


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

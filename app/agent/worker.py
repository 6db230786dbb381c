"""The orchestrator worker's factory: the agent workflow with its LLM and local-tool activities.

`orchestrator_worker.py`, the tests and the benchmark all build the worker here, so they run the
same thing. Tests pass extra `Worker` options (a task queue of their own, test doubles); the
benchmark passes tuning options.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from app.agent.activities import execute_tool, plan_next_action
from app.agent.llm_client import announce_worker_model, choose_model
from app.agent.workflow import AgentWorkflow
from app.core.names import ORCHESTRATOR


def orchestrator_worker(client: Client, **options: Any) -> Worker:
    """The agent workflow with its LLM and local-tool activities."""
    # Clients learn the model from the worker (get_status), not from their own environment.
    announce_worker_model(choose_model().describe())
    settings: dict[str, Any] = {
        "task_queue": ORCHESTRATOR.task_queue,
        "workflows": [AgentWorkflow],
        "activities": [plan_next_action, execute_tool],
        # In-flight LLM calls get this long to finish when the worker is stopped.
        "graceful_shutdown_timeout": timedelta(seconds=30),
    }
    return Worker(client, **(settings | options))

"""What each of the three workers runs: one factory per worker, so the programs, the tests and
the benchmark all build the same worker.

The programs (`orchestrator_worker.py`, `it_nexus_worker.py`, `finance_nexus_worker.py`) only
connect, call a factory and run it. Tests pass extra `Worker` options (a task queue of their
own, test-double activities, interceptors); the benchmark passes tuning options.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from app.activities import execute_tool, plan_next_action
from app.finance_nexus_handler import FinanceServiceHandler
from app.it_activities import fetch_jira_metrics
from app.it_nexus_handler import ITServiceHandler, JiraMetricsWorkflow
from app.shared import FINANCE_TASK_QUEUE, IT_TASK_QUEUE, ORCHESTRATOR_TASK_QUEUE
from app.workflow import AgentWorkflow


def orchestrator_worker(client: Client, **options: Any) -> Worker:
    """The agent workflow with its LLM and local-tool activities."""
    settings: dict[str, Any] = {
        "task_queue": ORCHESTRATOR_TASK_QUEUE,
        "workflows": [AgentWorkflow],
        "activities": [plan_next_action, execute_tool],
        # In-flight LLM calls get this long to finish when the worker is stopped.
        "graceful_shutdown_timeout": timedelta(seconds=30),
    }
    return Worker(client, **(settings | options))


def it_worker(client: Client, **options: Any) -> Worker:
    """The IT team's Nexus service, and the workflow behind `jira_metrics`."""
    settings: dict[str, Any] = {
        "task_queue": IT_TASK_QUEUE,
        "nexus_service_handlers": [ITServiceHandler()],
        "workflows": [JiraMetricsWorkflow],
        "activities": [fetch_jira_metrics],
    }
    return Worker(client, **(settings | options))


def finance_worker(client: Client, **options: Any) -> Worker:
    """The Finance team's Nexus service."""
    settings: dict[str, Any] = {
        "task_queue": FINANCE_TASK_QUEUE,
        "nexus_service_handlers": [FinanceServiceHandler()],
    }
    return Worker(client, **(settings | options))

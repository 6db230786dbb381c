"""The IT worker's factory: the IT Nexus service, and the workflow behind `jira_metrics`."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from app.core.names import IT
from app.core.sandbox import SandboxedRunner
from app.it.activities import fetch_jira_metrics
from app.it.handler import ITServiceHandler, JiraMetricsWorkflow


def it_worker(client: Client, **options: Any) -> Worker:
    """The IT team's Nexus service, and the workflow behind `jira_metrics`."""
    settings: dict[str, Any] = {
        "task_queue": IT.task_queue,
        "nexus_service_handlers": [ITServiceHandler()],
        "workflows": [JiraMetricsWorkflow],
        "activities": [fetch_jira_metrics],
        "workflow_runner": SandboxedRunner(),
    }
    return Worker(client, **(settings | options))

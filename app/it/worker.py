"""The IT worker's factory: the IT Nexus service, and the workflows behind its operations."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from app.core.names import IT
from app.core.sandbox import SandboxedRunner
from app.it.activities import create_jira_issue, fetch_jira_metrics
from app.it.handler import CreateJiraIssueWorkflow, ITServiceHandler, JiraMetricsWorkflow


def it_worker(client: Client, **options: Any) -> Worker:
    """The IT team's Nexus service, and the workflows behind its operations."""
    settings: dict[str, Any] = {
        "task_queue": IT.task_queue,
        "nexus_service_handlers": [ITServiceHandler()],
        "workflows": [JiraMetricsWorkflow, CreateJiraIssueWorkflow],
        "activities": [fetch_jira_metrics, create_jira_issue],
        "workflow_runner": SandboxedRunner(),
    }
    return Worker(client, **(settings | options))

"""The Finance worker's factory: the Finance Nexus service."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from app.core.names import FINANCE
from app.finance.handler import FinanceServiceHandler


def finance_worker(client: Client, **options: Any) -> Worker:
    """The Finance team's Nexus service."""
    settings: dict[str, Any] = {
        "task_queue": FINANCE.task_queue,
        "nexus_service_handlers": [FinanceServiceHandler()],
    }
    return Worker(client, **(settings | options))

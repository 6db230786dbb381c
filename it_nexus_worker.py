"""The IT team's Nexus worker: serves ITService (`jira_metrics`, `get_ip`) in `it-namespace`.

Run it with `uv run it_nexus_worker.py`. The endpoint `it-nexus-endpoint` routes calls to its task
queue (create it once with `uv run python -m app.setup_nexus`). Connection settings come from the
environment, as for every program here.
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.worker import Worker

from app.it_activities import fetch_jira_metrics
from app.it_nexus_handler import ITServiceHandler, JiraMetricsWorkflow
from app.shared import IT_NAMESPACE, IT_TASK_QUEUE
from app.temporal_client import connect
from app.worker_runner import configure_logging, run_until_stopped


async def main(client: Client | None = None) -> None:
    """Serve the IT tools until Ctrl-C; tests pass their own client."""
    configure_logging()
    client = client or await connect(IT_NAMESPACE)
    worker = Worker(
        client,
        task_queue=IT_TASK_QUEUE,
        nexus_service_handlers=[ITServiceHandler()],
        workflows=[JiraMetricsWorkflow],
        activities=[fetch_jira_metrics],
    )
    await run_until_stopped(worker, "IT Nexus worker")


if __name__ == "__main__":
    asyncio.run(main())

"""The IT team's Nexus worker: serves ITService (`jira_metrics`, `get_ip`,
`create_jira_issue`) in `it-namespace`.

Run it with `uv run it_nexus_worker.py`. The endpoint `it-nexus-endpoint` routes calls to its task
queue (create it once with `uv run python -m app.core.setup`). Connection settings come from the
environment, as for every program here.
"""

from __future__ import annotations

from temporalio.client import Client

from app.core.connection import connect_or_explain
from app.core.names import IT
from app.core.worker_runner import configure_logging, run_until_stopped, run_worker_program
from app.it.worker import it_worker


async def main(client: Client | None = None) -> None:
    """Serve the IT tools until Ctrl-C; tests pass their own client."""
    configure_logging()
    client = client or await connect_or_explain(IT.namespace)
    await run_until_stopped(it_worker(client), "IT Nexus worker")


if __name__ == "__main__":
    run_worker_program(main, IT.name)

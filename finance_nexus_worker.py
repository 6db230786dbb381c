"""The Finance team's Nexus worker: serves FinanceService (`stock_price`, `calculate_roi`).

Run it with `uv run finance_nexus_worker.py`. It polls in `finance-namespace`, where the endpoint
`finance-nexus-endpoint` routes calls (create it once with `uv run python -m app.core.setup`).
Connection settings come from the environment, as for every program here.
"""

from __future__ import annotations

from temporalio.client import Client

from app.core.connection import connect_or_explain
from app.core.names import FINANCE
from app.core.worker_runner import configure_logging, run_until_stopped, run_worker_program
from app.finance.worker import finance_worker


async def main(client: Client | None = None) -> None:
    """Serve the Finance tools until Ctrl-C; tests pass their own client."""
    configure_logging()
    client = client or await connect_or_explain(FINANCE.namespace)
    await run_until_stopped(finance_worker(client), "Finance Nexus worker")


if __name__ == "__main__":
    run_worker_program(main, FINANCE.name)

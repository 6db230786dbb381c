"""The orchestrator worker: runs the agent workflow and its activities (LLM calls, local tools).

Run it with `uv run orchestrator_worker.py`. It connects with the SDK's environment configuration
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, ...), defaulting to the local dev
server's `default` namespace, and reads the model settings (`LLM_MODEL`, provider keys) and the
budget per conversation (`AGENT_MAX_TOKENS`, `AGENT_MAX_COST_USD`) from the environment or `.env`.
It refuses to start, with one line saying what to run, when the Nexus endpoints its tools route to
or the agent's search attributes are missing. Ctrl-C lets in-flight LLM calls finish before it
stops.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client

from app.agent.llm_client import BudgetSettings
from app.agent.worker import orchestrator_worker, startup_problem, warm_up
from app.core.connection import connect
from app.core.names import ORCHESTRATOR
from app.core.worker_runner import configure_logging, run_until_stopped, run_worker_program


async def main(client: Client | None = None) -> None:
    configure_logging()
    try:
        budget = BudgetSettings.from_env()
    except ValueError as err:
        raise SystemExit(f"{ORCHESTRATOR.name}: {err}") from None
    client = client or await connect(ORCHESTRATOR.namespace)
    # Checked before LiteLLM's import starts, so a worker that cannot serve exits at once.
    if (problem := await startup_problem(client)) is not None:
        raise SystemExit(f"{ORCHESTRATOR.name}: {problem}")
    # Importing LiteLLM takes seconds: pay it now, off the event loop, not on the first message.
    warming_up = asyncio.create_task(asyncio.to_thread(warm_up))
    worker = orchestrator_worker(client)
    log = logging.getLogger(__name__)
    log.info("Model: %s", (await warming_up).describe())
    log.info("Budget: %s (AGENT_MAX_TOKENS, AGENT_MAX_COST_USD)", budget.describe())
    await run_until_stopped(worker, "Orchestrator worker")


if __name__ == "__main__":
    run_worker_program(main, ORCHESTRATOR.name)

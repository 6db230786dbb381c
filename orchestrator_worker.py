"""The orchestrator worker: runs the agent workflow and its activities (LLM calls, local tools).

Run it with `uv run orchestrator_worker.py`. It connects with the SDK's environment configuration
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, ...), defaulting to the local dev
server's `default` namespace, and reads the model settings (`LLM_MODEL`, provider keys) and the
budget per conversation (`AGENT_MAX_TOKENS`, `AGENT_MAX_COST_USD`) from the environment or `.env`.
It refuses to start, with one line saying what to run, when the Nexus endpoints its tools route to
or the agent's search attributes are missing. It polls at once and loads LiteLLM (seconds) in the
background; a planning call that arrives first waits for it. Ctrl-C lets in-flight LLM calls
finish before it stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from temporalio.client import Client

from app.agent.llm.client import (
    READY_TEXT,
    BudgetSettings,
    LLMSettings,
    litellm_ready,
    warm_up,
)
from app.agent.llm.prices import unpriced_budget_warning
from app.agent.worker import orchestrator_worker, prepare_model, startup_problem
from app.core.connection import connect_or_explain
from app.core.names import ORCHESTRATOR
from app.core.worker_runner import configure_logging, run_until_stopped, run_worker_program


async def log_model_when_warm(budget: BudgetSettings) -> None:
    """Say which model answers once LiteLLM is imported (the demo waits for this line)."""
    await litellm_ready()
    choice = await asyncio.to_thread(prepare_model)
    log = logging.getLogger(__name__)
    log.info("Budget: %s (AGENT_MAX_TOKENS, AGENT_MAX_COST_USD)", budget.describe())
    settings = dataclasses.replace(LLMSettings.from_env(), model=choice.model)
    if (warning := await asyncio.to_thread(unpriced_budget_warning, settings, budget)) is not None:
        log.warning("%s", warning)
    log.info("%s %s", READY_TEXT, choice.describe())


async def main(client: Client | None = None) -> None:
    configure_logging()
    try:
        budget = BudgetSettings.from_env()
    except ValueError as err:
        raise SystemExit(f"{ORCHESTRATOR.name}: {err}") from None
    client = client or await connect_or_explain(ORCHESTRATOR.namespace)
    if (problem := await startup_problem(client)) is not None:
        raise SystemExit(f"{ORCHESTRATOR.name}: {problem}")
    worker = orchestrator_worker(client)
    tasks: set[asyncio.Task[None]] = set()

    def start_warm_up() -> None:
        # Importing LiteLLM takes seconds: poll first, then import it in a thread; a planning
        # call that arrives meanwhile waits for it (app.agent.llm.client.litellm_ready).
        warm_up()
        tasks.add(asyncio.create_task(log_model_when_warm(budget)))

    await run_until_stopped(worker, "Orchestrator worker", once_polling=start_warm_up)


if __name__ == "__main__":
    run_worker_program(main, ORCHESTRATOR.name)

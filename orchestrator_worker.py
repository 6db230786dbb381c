"""The orchestrator worker: runs the agent workflow and its activities (LLM calls, local tools).

Run it with `uv run orchestrator_worker.py`. It connects with the SDK's environment configuration
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, ...), defaulting to the local dev
server's `default` namespace, and reads the model settings (`LLM_MODEL`, provider keys) from the
environment or `.env`. Ctrl-C lets in-flight LLM calls finish before it stops.
"""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client

from app.agent.llm_client import ModelChoice, choose_model, litellm_module
from app.agent.worker import orchestrator_worker
from app.core.connection import connect
from app.core.names import ORCHESTRATOR
from app.core.worker_runner import configure_logging, run_until_stopped


def warm_up() -> ModelChoice:
    """Import LiteLLM and choose the model, before the first LLM call needs them."""
    # choose_model() alone skips the import for offline models and explicit keys; the first
    # activity would then import LiteLLM on the worker's event loop, stalling it for seconds.
    litellm_module()
    return choose_model()


async def main(client: Client | None = None) -> None:
    configure_logging()
    # Importing LiteLLM takes seconds: pay it now, while connecting, not on the first message.
    warming_up = asyncio.create_task(asyncio.to_thread(warm_up))
    client = client or await connect(ORCHESTRATOR.namespace)
    # Built while LiteLLM imports: checking the workflow in its sandbox also takes seconds.
    worker = orchestrator_worker(client)
    logging.getLogger(__name__).info("Model: %s", (await warming_up).describe())
    await run_until_stopped(worker, "Orchestrator worker")


if __name__ == "__main__":
    asyncio.run(main())

"""Running a worker until Ctrl-C or SIGTERM, then shutting it down cleanly.

All three worker programs use this, so they stop the same way whether a person presses Ctrl-C
in a terminal or `uv run demo` stops its children.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from temporalio.worker import Worker


async def run_until_stopped(
    worker: Worker, description: str, once_polling: Callable[[], object] | None = None
) -> None:
    """Run `worker` until SIGINT or SIGTERM arrives; in-flight tasks get the graceful timeout.

    `once_polling` runs as soon as the worker polls (the orchestrator starts its warm-up there).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with worker:
        logging.getLogger(__name__).info(
            "%s: polling task queue %s", description, worker.task_queue
        )
        if once_polling is not None:
            once_polling()
        await stop.wait()
        logging.getLogger(__name__).info("%s: shutting down", description)


def configure_logging() -> None:
    """One-line log records on stderr, quiet libraries."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("LiteLLM", "litellm", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

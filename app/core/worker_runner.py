"""Running a worker until Ctrl-C or SIGTERM, then shutting it down cleanly.

All three worker programs use this, so they stop the same way whether a person presses Ctrl-C
in a terminal or `uv run demo` stops its children. A worker that meets a payload it cannot
decrypt stops too, with one line saying which key is missing: running on would fail the same
workflow task again and again, while the fix is always in the worker's configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from temporalio.worker import Worker

from app.core.codec import EncryptionKeyError, codec_of


async def run_until_stopped(
    worker: Worker, description: str, once_polling: Callable[[], object] | None = None
) -> None:
    """Run `worker` until SIGINT or SIGTERM arrives; in-flight tasks get the graceful timeout.

    `once_polling` runs as soon as the worker polls (the orchestrator starts its warm-up there).
    Raises the codec's `EncryptionKeyError` when a payload could not be decrypted.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    codec = codec_of(worker.client.data_converter)
    undecryptable = codec.failed if codec else asyncio.Event()
    async with worker:
        logging.getLogger(__name__).info(
            "%s: polling task queue %s", description, worker.task_queue
        )
        if once_polling is not None:
            once_polling()
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(undecryptable.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        logging.getLogger(__name__).info("%s: shutting down", description)
    if codec and codec.failure:
        raise codec.failure


def run_worker_program(main: Callable[[], Coroutine[Any, Any, None]], description: str) -> None:
    """`asyncio.run(main())`; a key problem ends the program with one line and exit code 1."""
    try:
        asyncio.run(main())
    except (EncryptionKeyError, SystemExit) as err:
        # A key problem, or a start-up check that refused (SystemExit with its one line).
        code = 1 if not isinstance(err, SystemExit) or isinstance(err.code, str) else err.code
        if not isinstance(err, SystemExit) or isinstance(err.code, str):
            message = str(err) if isinstance(err, SystemExit) else f"{description}: {err}"
            print(message, file=sys.stderr, flush=True)
        # Measured: finalizing the interpreter while the SDK's native threads (or LiteLLM's
        # import thread) still run crashed it now and then (PyGILState_Release), turning a clean
        # one-line exit into a core dump. The worker has shut down: nothing is left to clean up.
        logging.shutdown()
        os._exit(code if isinstance(code, int) else 1)


def configure_logging() -> None:
    """One-line log records on stderr, quiet libraries."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("LiteLLM", "litellm", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

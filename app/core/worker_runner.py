"""Running a worker until Ctrl-C or SIGTERM, then shutting it down cleanly.

All three worker programs use this, so they stop the same way whether a person presses Ctrl-C
in a terminal or `uv run demo` stops its children. A worker that meets a payload it cannot
decrypt stops too, with one line saying which key is missing: running on would fail the same
workflow task again and again, while the fix is always in the worker's configuration. A worker
that cannot reach its server says so in one line too (`ConnectionProblem`), never a traceback.
Each worker program starts its telemetry here, before it connects (`app/core/telemetry.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from temporalio.worker import Worker

from app.core.codec import EncryptionKeyError, codec_of
from app.core.connection import ConnectionProblem
from app.core.telemetry import (
    TelemetrySettingError,
    flush_traces,
    log_handler_formatter,
    start_worker_telemetry,
)


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
    """`asyncio.run(main())`; a program that cannot run ends with one line and exit code 1.

    The one line is a server that does not answer, a key problem, or a start-up check that
    refused (`SystemExit` with its message). A Ctrl-C before the worker polls exits with 130.
    """
    configure_logging()
    try:
        start_worker_telemetry(description.lower().replace(" ", "-"))
        asyncio.run(main())
    except (ConnectionProblem, EncryptionKeyError, TelemetrySettingError) as err:
        _exit(1, f"{description}: {err}")
    except SystemExit as err:
        if isinstance(err.code, str):
            _exit(1, err.code)
        _exit(err.code or 0)
    except KeyboardInterrupt:
        _exit(130)


def _exit(code: int, message: str | None = None) -> NoReturn:
    """Print `message` (if any) on stderr and end the process at once with `code`."""
    if message is not None:
        print(message, file=sys.stderr, flush=True)
    # Measured: finalizing the interpreter while the SDK's native threads (or LiteLLM's import
    # thread) still run crashed it now and then (PyGILState_Release), turning a clean one-line
    # exit into a core dump. The worker has shut down: only buffered spans and logs are left.
    flush_traces()
    logging.shutdown()
    os._exit(code)


def configure_logging() -> None:
    """One log record per line on stderr (JSON with `LOG_FORMAT=json`), quiet libraries."""
    handler = logging.StreamHandler()
    handler.setFormatter(log_handler_formatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for noisy in ("LiteLLM", "litellm", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

"""Running a worker until Ctrl-C or SIGTERM, then shutting it down cleanly.

All three worker programs use this, so they stop the same way whether a person presses Ctrl-C
in a terminal or `uv run demo` stops its children. A payload the worker cannot decrypt does not
stop it: the codec (`app/core/codec.py`) fails only the task that holds it, with the key id in the
error, and the worker serves everything else. A worker that cannot reach its server says so in
one line (`ConnectionProblem`), never a traceback. Each worker program starts its telemetry here,
before it connects (`app/core/telemetry.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from temporalio.client import Client

from app.core.codec import EncryptionKeyError
from app.core.connection import ConnectionProblem
from app.core.exiting import exit_now
from app.core.telemetry import (
    TelemetrySettingError,
    flush_traces,
    log_handler_formatter,
    start_worker_telemetry,
)


class RunnableWorker(Protocol):
    """A `temporalio.worker.Worker`, or several run together (`app.agent.worker.Workers`)."""

    @property
    def client(self) -> Client: ...

    @property
    def task_queue(self) -> str: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, exc_type: Any, exc: Any, traceback: Any) -> Any: ...


async def run_until_stopped(
    worker: RunnableWorker, description: str, once_polling: Callable[[], object] | None = None
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


def run_worker_program(main: Callable[[], Coroutine[Any, Any, None]], description: str) -> None:
    """`asyncio.run(main())`; a program that cannot run ends with one line and exit code 1.

    The one line is a server that does not answer, a key problem, or a start-up check that
    refused (`SystemExit` with its message). A Ctrl-C before the worker polls exits with 130.
    """
    configure_logging()
    # The worker has shut down when main returns: nothing is left to clean up but the buffered
    # spans, and a normal interpreter teardown can crash while the SDK's threads still run
    # (app/core/exiting.py).
    code: int = 0
    message: str | None = None
    try:
        start_worker_telemetry(description.lower().replace(" ", "-"))
        asyncio.run(main())
    except (ConnectionProblem, EncryptionKeyError, TelemetrySettingError) as err:
        code, message = 1, f"{description}: {err}"
    except SystemExit as err:
        if isinstance(err.code, str):
            code, message = 1, err.code
        else:
            code = err.code or 0
    except KeyboardInterrupt:
        code = 130
    flush_traces()
    exit_now(code, message)


def configure_logging() -> None:
    """One log record per line on stderr (JSON with `LOG_FORMAT=json`), quiet libraries."""
    handler = logging.StreamHandler()
    handler.setFormatter(log_handler_formatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for noisy in ("LiteLLM", "litellm", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

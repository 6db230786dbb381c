"""Ending a program that used the Temporal SDK: flush what it printed, then leave at once.

Measured: letting the interpreter finalize normally after `asyncio.run` crashed it now and then
("Fatal Python error", exit codes 134 and 139: 1 run of `python -m app.core.setup` in 15 aborted,
1 in 20 segfaulted), because the SDK's native runtime thread is still running while Python tears
its modules down; buffered output could be lost the same way. The SDK (1.35) offers no call that
stops that thread. So once a program is done, `exit_now` flushes stdout, stderr and the logging
handlers itself and ends the process with `os._exit`, skipping the teardown that crashes. Only
call it when nothing is left to clean up: no `finally` or `atexit` handler runs after it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn


def exit_now(code: int, message: str | None = None) -> NoReturn:
    """Print `message` (if any) on stderr, flush every output, and end the process with `code`."""
    if message is not None:
        with contextlib.suppress(OSError, ValueError):
            print(message, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # A reader that went away (a closed pipe) must not turn success into a traceback.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)

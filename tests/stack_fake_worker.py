"""A stand-in worker for the demo's start-up checks: one that fails, or one that never polls.

`FAKE_WORKER=fail` prints a reason and exits with code 3, as a worker with a broken setting would;
`FAKE_WORKER=idle` runs without ever polling, as a worker stuck before connecting would.
"""

from __future__ import annotations

import os
import sys
import time

if __name__ == "__main__":
    if os.environ.get("FAKE_WORKER") == "fail":
        print("boom: this worker cannot start", file=sys.stderr)
        sys.exit(3)
    print("starting, but never polling", flush=True)
    time.sleep(60)

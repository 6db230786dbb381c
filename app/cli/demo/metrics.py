"""The demo's Prometheus addresses: a free port of 127.0.0.1 for each worker it starts.

Each worker serves its metrics at `PROMETHEUS_BIND_ADDRESS` (see `app/core/telemetry.py`), so
three workers on one machine need three ports. A worker the demo restarts gets its port back, so
a scrape config written for a demo run stays right; each worker's log names its address.
"""

from __future__ import annotations

from app.core.names import Deployment
from app.core.processes import free_port
from app.core.telemetry import METRICS_ADDRESS

_addresses: dict[str, str] = {}


def metrics_env(program: Deployment) -> dict[str, str]:
    """The environment entry that gives `program` its own metrics address."""
    address = _addresses.setdefault(program.name, f"127.0.0.1:{free_port()}")
    return {METRICS_ADDRESS: address}

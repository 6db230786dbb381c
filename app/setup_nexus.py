"""Creates the IT and Finance namespaces and their Nexus endpoints, idempotently.

Run it once per server with `uv run python -m app.setup_nexus` (`uv run demo` runs it for you).
Namespaces come first: an endpoint whose target namespace does not exist is refused. Things that
already exist count as success, so running it again is harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from google.protobuf.duration_pb2 import Duration
from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
from temporalio.api.operatorservice.v1 import CreateNexusEndpointRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from app.shared import (
    FINANCE_ENDPOINT,
    FINANCE_NAMESPACE,
    FINANCE_TASK_QUEUE,
    IT_ENDPOINT,
    IT_NAMESPACE,
    IT_TASK_QUEUE,
    ORCHESTRATOR_NAMESPACE,
)
from app.temporal_client import connect

# (endpoint, target namespace, target task queue)
ENDPOINTS = [
    (IT_ENDPOINT, IT_NAMESPACE, IT_TASK_QUEUE),
    (FINANCE_ENDPOINT, FINANCE_NAMESPACE, FINANCE_TASK_QUEUE),
]
# How long closed workflows stay visible; the same as the `temporal` CLI's default.
RETENTION_DAYS = 3


def cli_commands() -> list[str]:
    """The same setup as `temporal` CLI commands (they fail if the thing already exists)."""
    commands = [
        f"temporal operator namespace create --namespace {ns} --retention {RETENTION_DAYS}d"
        for _, ns, _ in ENDPOINTS
    ]
    commands += [
        f"temporal operator nexus endpoint create --name {name} "
        f"--target-namespace {ns} --target-task-queue {queue}"
        for name, ns, queue in ENDPOINTS
    ]
    return commands


async def _create(description: str, create: Awaitable[object]) -> str:
    """Await `create`; "already exists" counts as success, so setup can run any number of times."""
    try:
        await create
    except RPCError as err:
        if err.status == RPCStatusCode.ALREADY_EXISTS:
            return f"{description}: already exists"
        raise
    return f"{description}: created"


async def ensure_nexus_setup(client: Client) -> list[str]:
    """Create the namespaces, then the endpoints; returns one line per thing."""
    lines = []
    for _, namespace, _ in ENDPOINTS:
        register = RegisterNamespaceRequest(
            namespace=namespace,
            workflow_execution_retention_period=Duration(seconds=RETENTION_DAYS * 24 * 3600),
        )
        lines.append(
            await _create(
                f"namespace {namespace}", client.workflow_service.register_namespace(register)
            )
        )
    for name, namespace, task_queue in ENDPOINTS:
        target = EndpointTarget(
            worker=EndpointTarget.Worker(namespace=namespace, task_queue=task_queue)
        )
        create = CreateNexusEndpointRequest(spec=EndpointSpec(name=name, target=target))
        lines.append(
            await _create(
                f"endpoint {name} -> {namespace}/{task_queue}",
                client.operator_service.create_nexus_endpoint(create),
            )
        )
    return lines


async def main(client: Client | None = None) -> None:
    """Connect (unless given a client), set everything up and print what was done."""
    client = client or await connect(ORCHESTRATOR_NAMESPACE)
    for line in await ensure_nexus_setup(client):
        print(line)


if __name__ == "__main__":
    asyncio.run(main())

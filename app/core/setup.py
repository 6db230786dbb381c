"""Creates the IT and Finance namespaces and their Nexus endpoints, idempotently.

Run it once per server with `uv run python -m app.core.setup` (`uv run demo` runs it for you).
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

from app.core.connection import connect
from app.core.names import NEXUS_DEPLOYMENTS, ORCHESTRATOR, team_namespaces

# How long closed workflows stay visible; the same as the `temporal` CLI's default.
RETENTION_DAYS = 3


def cli_commands() -> list[str]:
    """The same setup as `temporal` CLI commands (they fail if the thing already exists)."""
    commands = [
        f"temporal operator namespace create --namespace {ns} --retention {RETENTION_DAYS}d"
        for ns in team_namespaces()
    ]
    commands += [
        f"temporal operator nexus endpoint create --name {team.endpoint} "
        f"--target-namespace {team.namespace} --target-task-queue {team.task_queue}"
        for team in NEXUS_DEPLOYMENTS
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
    for namespace in team_namespaces():
        register = RegisterNamespaceRequest(
            namespace=namespace,
            workflow_execution_retention_period=Duration(seconds=RETENTION_DAYS * 24 * 3600),
        )
        lines.append(
            await _create(
                f"namespace {namespace}", client.workflow_service.register_namespace(register)
            )
        )
    for team in NEXUS_DEPLOYMENTS:
        target = EndpointTarget(
            worker=EndpointTarget.Worker(namespace=team.namespace, task_queue=team.task_queue)
        )
        create = CreateNexusEndpointRequest(spec=EndpointSpec(name=team.endpoint, target=target))
        lines.append(
            await _create(
                f"endpoint {team.endpoint} -> {team.namespace}/{team.task_queue}",
                client.operator_service.create_nexus_endpoint(create),
            )
        )
    return lines


async def main(client: Client | None = None) -> None:
    """Connect (unless given a client), set everything up and print what was done."""
    client = client or await connect(ORCHESTRATOR.namespace)
    for line in await ensure_nexus_setup(client):
        print(line)


if __name__ == "__main__":
    asyncio.run(main())

"""Registers the agent's search attributes and creates the Nexus namespaces and endpoints.

Run it once per server with `uv run python -m app.core.setup` (`uv run demo` runs it for you).
The search attributes (`AgentTurns`, `AgentTokens`, `AgentCostUSD`) go into the orchestrator's
namespace, one at a time so that one already there does not stop the others. Namespaces come
before endpoints: an endpoint whose target namespace does not exist is refused. Things that
already exist count as success, so running it again is harmless. Temporal Cloud registers search
attributes with `tcld` instead (`tcld_command()`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import NoReturn

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.nexus.v1 import EndpointSpec, EndpointTarget
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    CreateNexusEndpointRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from app.core.connection import ConnectionProblem, connect_or_explain
from app.core.dev_server import search_attribute_type
from app.core.exiting import exit_now
from app.core.names import AGENT_SEARCH_ATTRIBUTES, NEXUS_DEPLOYMENTS, ORCHESTRATOR, team_namespaces

# How long closed workflows stay visible; the same as the `temporal` CLI's default.
RETENTION_DAYS = 3


def search_attribute_cli_commands() -> list[str]:
    """The search attributes as `temporal` CLI commands (the dev server accepts them twice)."""
    return [
        f"temporal operator search-attribute create --namespace {ORCHESTRATOR.namespace} "
        f"--name {key.name} --type {search_attribute_type(key)}"
        for key in AGENT_SEARCH_ATTRIBUTES
    ]


def cli_commands() -> list[str]:
    """The Nexus setup as `temporal` CLI commands (they fail if the thing already exists)."""
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
        # Some servers say so only in the message (a search attribute, on older versions).
        if err.status == RPCStatusCode.ALREADY_EXISTS or "already exists" in err.message.lower():
            return f"{description}: already exists"
        raise
    return f"{description}: created"


def tcld_command(namespace: str = "<namespace>.<account>") -> str:
    """The one Temporal Cloud command that registers the search attributes."""
    flags = " ".join(
        f'--sa "{key.name}={search_attribute_type(key)}"' for key in AGENT_SEARCH_ATTRIBUTES
    )
    return f"tcld namespace search-attributes add --namespace {namespace} {flags}"


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the agent's search attributes in `client`'s namespace; one line per attribute."""
    # The dev server accepts a second registration silently: ask first, to report it right.
    missing = await missing_search_attributes(client)
    lines = []
    for key in AGENT_SEARCH_ATTRIBUTES:
        description = (
            f"search attribute {key.name} ({search_attribute_type(key)}) "
            f"in namespace {client.namespace}"
        )
        if missing is not None and key.name not in missing:
            lines.append(f"{description}: already exists")
            continue
        request = AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={key.name: IndexedValueType.ValueType(key.indexed_value_type)},
        )
        lines.append(
            await _create(description, client.operator_service.add_search_attributes(request))
        )
    return lines


async def missing_search_attributes(client: Client) -> list[str] | None:
    """The agent's search attributes `client`'s namespace lacks; None if the server won't say."""
    request = ListSearchAttributesRequest(namespace=client.namespace)
    try:
        response = await client.operator_service.list_search_attributes(request)
    except RPCError as err:
        # The time-skipping test server does not implement it; a restricted API key may not
        # be allowed to call it: then the worker starts anyway.
        if err.status in (RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.PERMISSION_DENIED):
            return None
        raise
    known = {**response.system_attributes, **response.custom_attributes}
    return [key.name for key in AGENT_SEARCH_ATTRIBUTES if key.name not in known]


async def search_attribute_problem(client: Client) -> str | None:
    """Why the agent workflow cannot run in `client`'s namespace (search attributes), or None."""
    missing = await missing_search_attributes(client)
    if not missing:
        return None
    return (
        f"namespace {client.namespace} lacks the search attributes {', '.join(missing)}, so "
        "every conversation would stall at its first answer: register them with "
        f"`uv run python -m app.core.setup` (on Temporal Cloud: `{tcld_command()}`)"
    )


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
    client = client or await connect_or_explain(ORCHESTRATOR.namespace)
    for line in await ensure_search_attributes(client) + await ensure_nexus_setup(client):
        print(line)


def run() -> NoReturn:
    """`python -m app.core.setup`: exit code 0 when done; a server that does not answer is one
    line and exit code 1. Ends with `exit_now`, as every program that used the SDK does."""
    try:
        asyncio.run(main())
    except ConnectionProblem as err:
        exit_now(1, f"setup: {err}")
    exit_now(0)


if __name__ == "__main__":
    run()

"""Whether the Nexus endpoints the tool catalog routes to exist on the server.

A Nexus call to an endpoint that does not exist is not an error the workflow can catch: the server
refuses the command and fails the workflow task, again on every retry, so the turn and every
message queued behind it would hang. So the orchestrator worker refuses to start without them, and
the workflow asks `check_endpoints` (a local activity, one RPC) before each step that calls remote
tools. That check runs in the same workflow task as the calls it guards: if the server refuses a
call because its endpoint has just been deleted, the retried task checks again and the tool
answers "unavailable" instead.
"""

from __future__ import annotations

import logging

from temporalio import activity
from temporalio.api.operatorservice.v1 import ListNexusEndpointsRequest
from temporalio.client import Client
from temporalio.service import RPCError

from app.agent.models import EndpointCheck, EndpointCheckResult
from app.agent.tools.catalog import TOOLS

SETUP_COMMAND = "uv run python -m app.core.setup"


def catalog_endpoints() -> list[str]:
    """Every endpoint a tool in the catalog routes to, in catalog order, without repeats."""
    return list(dict.fromkeys(t.route.endpoint for t in TOOLS.values() if t.route is not None))


async def existing_endpoints(client: Client) -> set[str]:
    """The names of all Nexus endpoints on the server."""
    names: set[str] = set()
    token = b""
    while True:
        page = await client.operator_service.list_nexus_endpoints(
            ListNexusEndpointsRequest(page_size=1000, next_page_token=token)
        )
        names.update(endpoint.spec.name for endpoint in page.endpoints)
        token = page.next_page_token
        if not token:
            return names


async def missing_endpoints(client: Client, wanted: list[str]) -> list[str]:
    """Those of `wanted` that do not exist on the server, in the order given."""
    existing = await existing_endpoints(client)
    return [name for name in wanted if name not in existing]


class EndpointsMissing(Exception):
    """Endpoints the catalog routes to do not exist; the message says which, and what to run."""

    def __init__(self, missing: list[str]) -> None:
        plural = "s do" if len(missing) > 1 else " does"
        super().__init__(
            f"the Nexus endpoint{plural} not exist on this server: {', '.join(missing)}. "
            f"Create them with `{SETUP_COMMAND}`, then start the worker again"
        )
        self.missing = missing


async def require_endpoints(client: Client) -> None:
    """Raise `EndpointsMissing` unless every endpoint of the catalog exists on the server."""
    try:
        missing = await missing_endpoints(client, catalog_endpoints())
    except RPCError as err:
        # Some servers do not let a worker's credentials list endpoints: then Nexus will tell.
        logging.getLogger(__name__).warning("Cannot list the Nexus endpoints: %s", err.message)
        return
    if missing:
        raise EndpointsMissing(missing)


@activity.defn
async def check_endpoints(check: EndpointCheck) -> EndpointCheckResult:
    """Which of the endpoints a step is about to call do not exist (one RPC)."""
    try:
        missing = await missing_endpoints(activity.client(), check.endpoints)
    except RPCError as err:
        # A server that does not let this worker list endpoints (Temporal Cloud manages them
        # elsewhere): call them, and let Nexus say what is wrong.
        activity.logger.debug("Cannot list the Nexus endpoints: %s", err.message)
        missing = []
    return EndpointCheckResult(missing=missing)

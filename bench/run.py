"""Benchmark of the durable agent loop: what Temporal costs per turn, and what it can carry.

Run it with `uv run python bench/run.py [--turns N] [--quick] [--latency-ms 0] [--json PATH]`.
Nothing needs to be running and nothing is downloaded: it starts its own dev servers from the
virtual environment's `temporal` binary on free ports (127.0.0.1, headless, in memory), creates the
namespaces and Nexus endpoints, and starts the three shipped worker programs as child processes.
The offline model answers every LLM call after a fixed delay (`--latency-ms`, 0 by default, so
the figures are pure orchestration). It measures, in one run:

1. turn latency (p50/p95/p99) over `--turns` sequential turns of each kind: plain answer, local
   tool, a remote tool through each Nexus endpoint, two tools at once; and the overhead, i.e. the
   latency minus the model's time (LLM calls x latency) and the tools' own time (from step 2);
2. the lower bound: the same turns through the same planner and tool functions in a plain
   in-process loop without Temporal;
3. the default-settings run ("baseline" in the tables): this project's code again, on a second
   dev server with default settings, plain activities for local tools and no eager activities.
   It is not the original sample (which this project was not measured against): speed-ups
   over it show what the settings and local activities buy;
4. throughput with 1, 10, 50 and 100 concurrent conversations on one orchestrator worker;
5. footprint: each worker's resident memory idle and with 100 open conversations, and the event
   history (events, bytes, workflow tasks) each kind of turn adds;
6. start-up: seconds from launching `uv run demo` to its ready line.

Then it checks the targets: issue 16's three figures for what a turn costs the orchestrator worker
(CPU per sequential turn, mean workflow task, planning activity) and the demo's start time first,
each with PASS or MISS and the background load. `--profile` samples the orchestrator worker with
py-spy during the sequential turns (see bench/profile.py).

It prints tables and writes the same figures as JSON (default `bench/results/latest.json`).
`--quick` is a smoke run of about a minute and a half. `bench/compare.py` measures the changes
that would lower the overhead further, one variant of the orchestrator worker at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from temporalio.client import WorkflowHandle

from app.agent.llm.client import OFFLINE_MODEL, litellm_ready, offline_model
from app.agent.models import AgentConfig, AgentResult
from app.agent.tools.catalog import tool_schemas
from app.agent.workflow import AgentWorkflow
from app.core.dev_server import find_binary
from app.core.exiting import exit_now
from app.core.names import PROJECT_ROOT
from bench.profile import Recording, record, summarise
from bench.results import (
    MIB,
    HistoryPerTurn,
    KindResult,
    LowerBoundResult,
    Percentiles,
    ProfileResult,
    Report,
    StartupResult,
    ThroughputResult,
    overhead,
    render,
)
from bench.stack import (
    ORCHESTRATOR_PROGRAM,
    ORCHESTRATOR_WORKER,
    TUNABLE_ORCHESTRATOR_PROGRAM,
    Stack,
    cpu_seconds,
    free_port,
    machine_busy_seconds,
    running_stack,
    worker_env,
)
from bench.workload import (
    ACTIVITY_RUNNING,
    KINDS_BY_KEY,
    TURN_KINDS,
    WFT_RUNNING,
    InProcessSamples,
    KindSamples,
    TemporalDriver,
    concurrent_turns,
    in_process_turns,
    sequential_turns,
)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
CONCURRENCY_LEVELS = (1, 10, 50, 100)
MACHINE = "machine"
# With piped input and output the demo's first line on stdout names the new conversation, once
# the server and the three workers are up; on a terminal it would then show the prompt "You:".
DEMO_READY_MARKERS = ("Conversation:", "Type a message", "You:")


@dataclass(frozen=True)
class Settings:
    """What to run, from the command line."""

    turns: int
    turns_per_conversation: int
    model_latency_ms: float
    stream_text: bool
    throughput_turns: int
    throughput_min_turns_each: int
    concurrency: tuple[int, ...]
    worker_args: tuple[str, ...] | None
    skip_baseline: bool
    skip_startup: bool
    json_path: Path
    profile: bool


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        description="Benchmark the durable agent loop (see the module docstring)."
    )
    parser.add_argument("--turns", type=int, help="sequential turns per kind (default 200)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 turns per kind")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="model latency per call")
    parser.add_argument(
        "--stream-text",
        choices=["on", "off"],
        default="on",
        help="token streaming in the workers (LLM_STREAM_TEXT; default on, as shipped)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument(
        "--turns-per-conversation", type=int, default=50, help="timed turns per conversation"
    )
    parser.add_argument(
        "--concurrency",
        default=",".join(map(str, CONCURRENCY_LEVELS)),
        help="concurrent conversations to try (default 1,10,50,100)",
    )
    parser.add_argument(
        "--worker-args",
        default=None,
        help="run bench/worker.py with these options instead of orchestrator_worker.py, to "
        "measure tuning; write it with '=', e.g. --worker-args='--unsandboxed'",
    )
    parser.add_argument(
        "--throughput-turns",
        type=int,
        help="turns per concurrency level, shared by its conversations (default 1000)",
    )
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the orchestrator worker with py-spy during the sequential turns; the raw "
        "stacks go to bench/results/ (open them in speedscope.app) and a summary is printed",
    )
    args = parser.parse_args(argv)
    turns = args.turns or (20 if args.quick else 200)
    return Settings(
        turns=turns,
        turns_per_conversation=min(args.turns_per_conversation, turns),
        model_latency_ms=args.latency_ms,
        stream_text=args.stream_text == "on",
        throughput_turns=args.throughput_turns or (100 if args.quick else 1000),
        throughput_min_turns_each=2 if args.quick else 10,
        concurrency=tuple(int(level) for level in args.concurrency.split(",")),
        worker_args=None if args.worker_args is None else tuple(shlex.split(args.worker_args)),
        skip_baseline=args.skip_baseline,
        skip_startup=args.skip_startup,
        json_path=args.json,
        profile=args.profile,
    )


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def use_offline_model(latency_ms: float, stream_text: bool = True) -> None:
    """This process's planner calls (the lower bound) use the offline model too; so do the
    workers, which also get LLM_STREAM_TEXT from here (`bench.stack.worker_env`)."""
    for key in [k for k in os.environ if k.startswith(("LLM_", "OFFLINE_MODEL_"))]:
        del os.environ[key]
    os.environ.update(
        LLM_MODEL="offline/agent",
        OFFLINE_MODEL_LATENCY_MS=f"{latency_ms:g}",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LLM_STREAM_TEXT="1" if stream_text else "0",
    )


def cpu_of(stack: Stack) -> Callable[[], dict[str, float]]:
    """CPU seconds so far of the stack's processes, this client, and the whole machine."""
    return lambda: {
        **stack.cpu_seconds(),
        "bench_client": cpu_seconds(os.getpid()),
        MACHINE: machine_busy_seconds(),
    }


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds used per process between two readings, and by every other process."""
    used = {name: after[name] - before[name] for name in before}
    machine = used.pop(MACHINE)
    # Other engineers' tests or benchmarks on the same machine: the figures are noisy if high.
    used["other_processes"] = max(0.0, machine - sum(used.values()))
    return used


def per_turn_ms(cpu: dict[str, float], turns: int) -> dict[str, float]:
    return {name: round(seconds * 1000 / turns, 2) for name, seconds in cpu.items()}


def rss_mib(stack: Stack) -> dict[str, float]:
    return {name: round(value / MIB, 1) for name, value in stack.rss_bytes().items()}


# ---------------------------------------------------------------------------------------------
# The measurements


async def measure_litellm_call(calls: int = 200) -> dict[str, float]:
    """CPU ms of one planning call to the offline provider, in this process, three ways.

    "model": the offline handler alone; "litellm": `litellm.acompletion`, as the agent calls it
    with token streaming off; "litellm streamed": with `stream=True` and the response rebuilt
    with `stream_chunk_builder`, as with streaming on. The differences are LiteLLM's own per-call
    work (set-up, logging, cost look-ups, the stream wrapper), which a real provider pays too.
    """
    litellm = await litellm_ready()
    messages = [{"role": "user", "content": "Calculate 15 * 23"}]
    request = {"model": OFFLINE_MODEL, "messages": messages, "tools": tool_schemas()}

    async def model() -> None:
        await offline_model().acompletion(
            model=OFFLINE_MODEL, messages=messages, optional_params={"tools": request["tools"]}
        )

    async def through_litellm() -> None:
        await litellm.acompletion(**request)

    async def streamed() -> None:
        stream = await litellm.acompletion(
            **request, stream=True, stream_options={"include_usage": True}
        )
        litellm.stream_chunk_builder([chunk async for chunk in stream], messages=messages)

    figures = {}
    for name, call in [
        ("model", model),
        ("litellm", through_litellm),
        ("litellm streamed", streamed),
    ]:
        for _ in range(20):
            await call()
        await asyncio.sleep(0.2)
        before = time.process_time()
        for _ in range(calls):
            await call()
        await asyncio.sleep(0.2)  # LiteLLM logs each call in a background task
        figures[name] = round((time.process_time() - before) * 1000 / calls, 2)
    return figures


async def measure_lower_bound(settings: Settings) -> list[LowerBoundResult]:
    """Step 2: the same turns without Temporal (after a warm-up that imports LiteLLM)."""
    await in_process_turns(TURN_KINDS, 1, 1)
    samples = await in_process_turns(TURN_KINDS, settings.turns, settings.turns_per_conversation)
    return [lower_bound_result(key, sample) for key, sample in samples.items()]


def lower_bound_result(key: str, samples: InProcessSamples) -> LowerBoundResult:
    timings = samples.timings
    return LowerBoundResult(
        kind=key,
        label=KINDS_BY_KEY[key].label,
        llm_calls=sum(t.llm_calls for t in timings) / len(timings),
        latency_ms=Percentiles.of([t.total_ms for t in timings]),
        planner_ms=Percentiles.of([t.planner_ms for t in timings]),
        tool_ms=Percentiles.of([t.tool_ms for t in timings]),
    )


def kind_results(samples: dict[str, KindSamples], turns: int) -> list[KindResult]:
    return [
        KindResult(
            kind=key,
            label=KINDS_BY_KEY[key].label,
            latency_ms=Percentiles.of(sample.latencies_ms),
            history=HistoryPerTurn.of(sample.history, turns),
        )
        for key, sample in samples.items()
    ]


async def measure_sequential(
    stack: Stack,
    config: AgentConfig,
    settings: Settings,
    report: Report,
    after_warm_up: Callable[[], Awaitable[object]] | None = None,
) -> dict[str, KindSamples]:
    """Steps 1 and 3: sequential turns of every kind, with the CPU each process spent."""
    driver = TemporalDriver(stack.client, config)
    await sequential_turns(driver, TURN_KINDS, 1, 1)  # warm-up: LiteLLM, caches, connections
    if after_warm_up is not None:
        await after_warm_up()
    cpu = cpu_of(stack)
    before, started = cpu(), time.perf_counter()
    samples = await sequential_turns(
        driver, TURN_KINDS, settings.turns, settings.turns_per_conversation
    )
    used, wall = cpu_used(before, cpu()), time.perf_counter() - started
    report.cpu_ms_per_sequential_turn[stack.name] = per_turn_ms(
        used, settings.turns * len(TURN_KINDS)
    )
    report.other_processes_cores[f"{stack.name} sequential turns"] = round(
        used["other_processes"] / wall, 2
    )
    return samples


async def throughput_level(
    stack: Stack, driver: TemporalDriver, conversations: int, turns_each: int, report: Report
) -> tuple[ThroughputResult, list[WorkflowHandle[AgentWorkflow, AgentResult]]]:
    """One concurrency level; the conversations are returned open, for the caller to end."""
    cpu = cpu_of(stack)
    before: dict[str, float] = {}
    run = await concurrent_turns(
        driver,
        KINDS_BY_KEY["local_tool"],
        conversations,
        turns_each,
        on_ready=lambda: before.update(cpu()),
    )
    used = cpu_used(before, cpu())
    turns = len(run.latencies_ms)
    report.other_processes_cores[f"{conversations} conversations"] = round(
        used["other_processes"] / run.wall_seconds, 2
    )
    result = ThroughputResult(
        conversations=conversations,
        turns=turns,
        wall_seconds=round(run.wall_seconds, 3),
        turns_per_second=turns / run.wall_seconds,
        latency_ms=Percentiles.of(run.latencies_ms),
        cpu_ms_per_turn=per_turn_ms(used, turns),
    )
    return result, run.handles


async def measure_throughput(
    stack: Stack, settings: Settings, report: Report
) -> list[ThroughputResult]:
    """Step 4 (and the loaded half of step 5): concurrent conversations of local-tool turns."""
    driver = TemporalDriver(stack.client, AgentConfig())
    results = []
    for conversations in settings.concurrency:
        turns_each = max(
            settings.throughput_min_turns_each,
            math.ceil(settings.throughput_turns / conversations),
        )
        progress(f"throughput: {conversations} conversations x {turns_each} turns")
        result, handles = await throughput_level(stack, driver, conversations, turns_each, report)
        results.append(result)
        if conversations == max(settings.concurrency):
            report.rss_mib[f"{conversations} open conversations"] = rss_mib(stack)
        await driver.end(handles)
    return results


async def read_until(stream: asyncio.StreamReader, markers: tuple[str, ...], timeout: float) -> str:
    """The first line of `stream` that contains one of `markers`."""
    deadline = time.monotonic() + timeout
    while True:
        line = await asyncio.wait_for(stream.readline(), max(0.1, deadline - time.monotonic()))
        if not line:
            raise RuntimeError(f"the demo closed its output before printing {markers[0]!r}")
        text = line.decode(errors="replace").rstrip()
        if any(marker in text for marker in markers):
            return text


async def measure_startup(settings: Settings) -> StartupResult:
    """Step 6: `uv run demo` with a fresh state folder and a free port, to its ready line.

    The demo starts a dev server at `TEMPORAL_ADDRESS` when nothing answers there. Its input and
    output are pipes, as in a script; after the ready line it is sent "hello", then "quit".
    """
    command = ["uv", "run", "--frozen", "demo", "--headless"]
    uv = shutil.which("uv")
    if not (PROJECT_ROOT / "app" / "cli" / "demo.py").exists():
        return StartupResult(command, skipped="app/cli/demo/main.py does not exist")
    if uv is None:
        return StartupResult(command, skipped="`uv` is not on PATH")
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as state:
        env = worker_env(f"127.0.0.1:{free_port()}", settings.model_latency_ms)
        env["DEMO_STATE_DIR"] = state
        started = time.perf_counter()
        demo = await asyncio.create_subprocess_exec(
            uv,
            *command[1:],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert demo.stdin and demo.stdout and demo.stderr
        status = asyncio.ensure_future(demo.stderr.read())
        result = StartupResult(command)
        try:
            result.ready_line = await read_until(demo.stdout, DEMO_READY_MARKERS, 120)
            result.ready_seconds = round(time.perf_counter() - started, 2)
            demo.stdin.write(b"hello\n")
            await demo.stdin.drain()
            await read_until(demo.stdout, ("Agent:",), 60)
            result.first_answer_seconds = round(time.perf_counter() - started, 2)
            demo.stdin.write(b"quit\n")
            await demo.stdin.drain()
            demo.stdin.close()
            await asyncio.wait_for(demo.wait(), 60)
        except (RuntimeError, TimeoutError) as err:
            result.skipped = f"the demo did not get ready: {err or type(err).__name__}"
        finally:
            if demo.returncode is None:
                demo.terminate()  # the demo stops its server and workers on SIGTERM
                await demo.wait()
        lines = (await status).decode(errors="replace").splitlines()
        result.demo_status_lines = [line for line in lines if line.strip()]
        return result


# Issue 16's targets for what one turn costs the orchestrator worker, and for `uv run demo`.
CPU_TARGETS_MS = {
    "orchestrator CPU per sequential turn (all kinds), ms": 6.0,
    "mean workflow task in the worker, ms": 1.5,
    "planning activity in the worker, minus model latency, ms": 1.5,
}
START_TARGET_SECONDS = 3.0


def worker_figures(report: Report) -> dict[str, float | None]:
    """The three CPU figures of the main stack's sequential turns, keyed like CPU_TARGETS_MS.

    Workflow-task and activity times are the spans the event timestamps show (WorkflowTaskStarted
    to Completed, ActivityTaskStarted to Completed), averaged over every task of every kind. On
    the main stack every activity task is a planning call (local tools run as local activities).
    """
    cpu = report.cpu_ms_per_sequential_turn.get("main", {}).get("orchestrator_worker")
    histories = [result.history for result in report.main]
    tasks = sum(history.workflow_tasks for history in histories)
    activities = sum(history.activity_tasks for history in histories)
    in_worker = sum(history.spans_ms[WFT_RUNNING] for history in histories)
    running = sum(history.spans_ms[ACTIVITY_RUNNING] for history in histories)
    model_ms = report.settings["model_latency_ms"]
    names = list(CPU_TARGETS_MS)
    return {
        names[0]: cpu,
        names[1]: in_worker / tasks if tasks else None,
        names[2]: running / activities - model_ms if activities else None,
    }


def check_targets(report: Report) -> list[dict[str, object]]:
    """The issues' targets, each with the measured figure: issue 16's four first."""
    over = {result.kind: result for result in report.overhead}
    targets: list[tuple[str, float | None, float, bool]] = []

    def at_most(name: str, measured: float | None, limit: float) -> None:
        targets.append((name, measured, limit, measured is not None and measured <= limit))

    def at_least(name: str, measured: float | None, limit: float) -> None:
        targets.append((name, measured, limit, measured is not None and measured >= limit))

    for name, measured in worker_figures(report).items():
        at_most(name, measured, CPU_TARGETS_MS[name])
    startup = report.startup
    at_most(
        "`uv run demo` to its first prompt, s",
        startup.ready_seconds if startup else None,
        START_TARGET_SECONDS,
    )
    at_most("local-tool turn overhead p50, ms", over["local_tool"].overhead_ms.p50, 15)
    for key in ("remote_it", "remote_finance"):
        at_most(f"{over[key].label} overhead p50, ms", over[key].overhead_ms.p50, 25)
    for result in report.overhead:
        at_least(
            f"speed-up over the default-settings run p50, {result.label}",
            result.speedup_over_baseline_p50,
            5,
        )
    throughput = {result.conversations: result for result in report.throughput}
    if 50 in throughput:
        at_least("turns/s with 50 conversations", throughput[50].turns_per_second, 100)
    loaded = [moment for moment in report.rss_mib if "open conversations" in moment]
    if loaded:
        rss = report.rss_mib[loaded[-1]].get("orchestrator_worker")
        at_most(f"orchestrator worker RSS with {loaded[-1]}, MiB", rss, 400)
    return [
        {"target": name, "measured": measured, "limit": limit, "met": met}
        for name, measured, limit, met in targets
    ]


def temporal_cli_version() -> str:
    binary = find_binary("temporal")
    if binary is None:
        return "not found"
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return output.stdout.strip()


def describe_environment() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "temporalio": metadata.version("temporalio"),
        "litellm": metadata.version("litellm"),
        "temporal_cli": temporal_cli_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def notes(settings: Settings, orchestrator: list[str]) -> list[str]:
    """How the figures were taken, printed with them so nobody has to guess."""
    program = " ".join(Path(part).name for part in orchestrator)
    return [
        "Main stack: dev server with the low-latency settings of app/core/dev_server.py; workers "
        f"are separate processes running the programs users run ({program}, it_nexus_worker.py, "
        "finance_nexus_worker.py); local tools as local activities; eager activities on (the "
        "SDK default). This process is the client and sends each turn as the send_message "
        "Update. Client, server and workers share the same CPUs.",
        "Baseline = this project on the dev server's default settings, plain activities, no "
        "eager start (not the original sample): default dynamic config (only the server version "
        "check is off: there is no internet), bench/worker.py --disable-eager-activity-execution "
        "(the same workflow and activities), AgentConfig(local_tools_as_local_activities=False).",
        "Overhead = turn latency - LLM calls x model latency - tools' own time. Tools' time is "
        "the in-process time of the tool functions (the slowest per step), median, from the "
        "lower-bound run. LiteLLM's own processing (the 'planner p50' column, with the model "
        "latency) is not subtracted: 'Temporal adds' = Temporal p50 - no-Temporal p50 is the "
        "part that is Temporal's alone.",
        f"Each kind runs in its own conversations of {settings.turns_per_conversation} timed "
        "turns after one untimed turn; kinds are interleaved turn by turn. History per turn is "
        "what the timed turns added (workflow start events excluded).",
        "Throughput: each conversation sends local-tool turns one after another; timed after "
        "every conversation has started and answered one untimed turn. CPU ms per turn is "
        "from /proc/<pid>/stat over the timed part.",
        "Memory: VmRSS from /proc/<pid>/status. 'started' is once every worker polls, before "
        "the first turn; 'idle' is after the sequential turns, with every conversation ended.",
        "Start-up: `uv run demo` with LLM_MODEL=offline/agent, like every worker here. With a "
        "provider model (e.g. openai/gpt-4o-mini) the demo itself imports LiteLLM to name the "
        "model in its banner (choose_model -> validate_environment), which adds seconds.",
        "Background load: the machine is shared; 'others' is the CPU every other process used "
        "while a figure was taken (from /proc/stat). Latency and throughput suffer when it is "
        "high: compare runs only at similar background load.",
    ]


def orchestrator_argv(settings: Settings) -> list[str]:
    """The shipped orchestrator program, or bench/worker.py when `--worker-args` tunes it."""
    if settings.worker_args is None:
        return ORCHESTRATOR_PROGRAM
    return [*TUNABLE_ORCHESTRATOR_PROGRAM, *settings.worker_args]


async def run_main_stack(
    settings: Settings, orchestrator: list[str], report: Report, log_dir: Path
) -> dict[str, KindSamples]:
    """Steps 1, 4 and 5 on the low-latency stack."""
    progress("main stack: starting the dev server and the three workers")
    async with running_stack(
        "main",
        low_latency=True,
        orchestrator_argv=orchestrator,
        model_latency_ms=settings.model_latency_ms,
        log_dir=log_dir,
    ) as stack:
        report.rss_mib["started"] = rss_mib(stack)
        progress(f"main stack: {settings.turns} sequential turns per kind")
        recordings: list[Recording] = []

        async def start_profile() -> None:
            path = settings.json_path.parent / f"profile-{time.strftime('%Y%m%d-%H%M%S')}.txt"
            progress(f"profile: py-spy on the orchestrator worker, to {path}")
            recordings.append(await record(stack.workers[ORCHESTRATOR_WORKER].pid, path, "raw"))

        samples = await measure_sequential(
            stack, AgentConfig(), settings, report, start_profile if settings.profile else None
        )
        for recording in recordings:
            await recording.stop()
            report.profile = ProfileResult(
                str(recording.path), summarise(recording.path.read_text()).render()
            )
        report.main = kind_results(samples, settings.turns)
        report.rss_mib["idle"] = rss_mib(stack)
        report.throughput = await measure_throughput(stack, settings, report)
    return samples


async def run_baseline_stack(settings: Settings, report: Report, log_dir: Path) -> None:
    """Step 3: the same sequential turns, this project on the dev server's default settings."""
    progress("baseline stack: default dev server settings, plain activities, no eager start")
    async with running_stack(
        "baseline",
        low_latency=False,
        orchestrator_argv=[*TUNABLE_ORCHESTRATOR_PROGRAM, "--disable-eager-activity-execution"],
        model_latency_ms=settings.model_latency_ms,
        log_dir=log_dir,
    ) as stack:
        progress(f"baseline stack: {settings.turns} sequential turns per kind")
        config = AgentConfig(local_tools_as_local_activities=False)
        samples = await measure_sequential(stack, config, settings, report)
        report.baseline = kind_results(samples, settings.turns)


async def benchmark(settings: Settings) -> Report:
    use_offline_model(settings.model_latency_ms, settings.stream_text)
    orchestrator = orchestrator_argv(settings)
    report = Report(
        settings={
            "turns": settings.turns,
            "turns_per_conversation": settings.turns_per_conversation,
            "model_latency_ms": settings.model_latency_ms,
            "stream_text": settings.stream_text,
            "throughput_turns": settings.throughput_turns,
            "concurrency": list(settings.concurrency),
            "orchestrator_worker": " ".join(Path(p).name for p in orchestrator),
        },
        environment=describe_environment(),
        notes=notes(settings, orchestrator),
    )
    progress(f"lower bound: {settings.turns} turns per kind in process, no Temporal")
    before = (machine_busy_seconds(), cpu_seconds(os.getpid()), time.perf_counter())
    report.lower_bound = await measure_lower_bound(settings)
    report.planning_call_cpu_ms = await measure_litellm_call()
    machine, client, wall = (
        machine_busy_seconds() - before[0],
        cpu_seconds(os.getpid()) - before[1],
        time.perf_counter() - before[2],
    )
    report.other_processes_cores["lower bound"] = round(max(0.0, machine - client) / wall, 2)
    # Kept after the run (next to the JSON file, overwritten each time) for post-mortems.
    logs = settings.json_path.parent / "logs"
    progress(f"server and worker logs: {logs}")
    main_samples = await run_main_stack(settings, orchestrator, report, logs)
    if not settings.skip_baseline:
        await run_baseline_stack(settings, report, logs)
    if settings.skip_startup:
        report.startup = StartupResult([], skipped="--skip-startup")
    else:
        progress("start-up: uv run demo")
        report.startup = await measure_startup(settings)
    lower = {result.kind: result for result in report.lower_bound}
    baseline = {result.kind: result for result in report.baseline}
    report.overhead = [
        overhead(
            lower[result.kind],
            result,
            baseline.get(result.kind),
            settings.model_latency_ms,
            main_samples[result.kind].latencies_ms,
        )
        for result in report.main
    ]
    report.targets = check_targets(report)
    return report


def main(argv: list[str] | None = None) -> None:
    settings = parse_args(argv)
    report = asyncio.run(benchmark(settings))
    print(render(report))
    report.write_json(settings.json_path)
    print(f"\nJSON: {settings.json_path}")


if __name__ == "__main__":
    main()
    exit_now(0)  # flushed, and no interpreter teardown while the SDK's threads run

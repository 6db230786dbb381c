"""Measured suggestions: orchestrator worker variants, compared on one server in alternating rounds.

Run it with `uv run python bench/compare.py [--rounds 3] [--turns 40] [--variants a,b,...]`.
One low-latency dev server and the two Nexus workers stay up; each round starts each variant of
the orchestrator worker in turn (`bench/worker.py` with different options, or a candidate workflow
from `bench/variants.py`), measures it, and stops it. Alternating rounds spread the noise of other
work on the machine over every variant alike; the figures printed are medians over rounds, and
each round's line (with the CPU other processes used) goes to stderr. Per variant it measures:

- p50 latency of `--turns` sequential turns of each kind (offline model, 0 ms);
- CPU milliseconds per turn of the orchestrator worker and of the dev server;
- turns per second with `--conversations` concurrent conversations of local-tool turns;
- responsiveness with a 1 s model: the slowest `get_status` query (the chat's progress line)
  during a local-tool turn, and how long a second message waits to be accepted.

It writes the same figures as JSON (default `bench/results/compare.json`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from temporalio.client import WorkflowUpdateStage

from app.agent.models import AgentConfig
from app.agent.workflow import AgentWorkflow
from app.core.exiting import exit_now
from bench.results import table
from bench.run import cpu_used, progress, use_offline_model
from bench.stack import (
    ORCHESTRATOR_WORKER,
    TUNABLE_ORCHESTRATOR_PROGRAM,
    Stack,
    cpu_seconds,
    machine_busy_seconds,
    running_stack,
)
from bench.workload import KINDS_BY_KEY, TURN_KINDS, TemporalDriver, concurrent_turns
from bench.workload import sequential_turns as run_sequential

RESULTS = Path(__file__).resolve().parent / "results"
LLM_LOCAL = ("--workflow", "bench.variants:LLMLocalActivityWorkflow")
VARIANTS: dict[str, tuple[str, ...]] = {
    "shipped": (),
    "no-eager": ("--disable-eager-activity-execution",),
    "unsandboxed": ("--unsandboxed",),
    "llm-local-activity": LLM_LOCAL,
    "llm-local-activity+unsandboxed": (*LLM_LOCAL, "--unsandboxed"),
}
RESPONSIVENESS_MODEL_MS = 1000.0


@dataclass
class VariantResult:
    """One variant's figures: one value per round, and the responsiveness check."""

    name: str
    worker_args: list[str]
    p50_ms: dict[str, list[float]] = field(default_factory=dict)
    orchestrator_cpu_ms: list[float] = field(default_factory=list)
    server_cpu_ms: list[float] = field(default_factory=list)
    other_processes_cpu_ms: list[float] = field(default_factory=list)
    turns_per_second: list[float] = field(default_factory=list)
    slowest_status_query_ms: float | None = None
    second_message_accepted_ms: float | None = None


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


async def start_variant(stack: Stack, args: tuple[str, ...]) -> None:
    await stack.start_workers({ORCHESTRATOR_WORKER: [*TUNABLE_ORCHESTRATOR_PROGRAM, *args]})


async def measure_round(
    stack: Stack, result: VariantResult, turns: int, conversations: int
) -> None:
    """One round of one variant: sequential turns, then concurrent conversations."""
    await start_variant(stack, tuple(result.worker_args))
    try:
        driver = TemporalDriver(stack.client, AgentConfig())
        await run_sequential(driver, TURN_KINDS, 1, 1)  # warm-up: LiteLLM, caches

        def reading() -> dict[str, float]:
            return {
                "orchestrator": cpu_seconds(stack.workers[ORCHESTRATOR_WORKER].pid),
                "server": cpu_seconds(stack.server.pid),
                "client": cpu_seconds(os.getpid()),
                "machine": machine_busy_seconds(),
            }

        before = reading()
        samples = await run_sequential(driver, TURN_KINDS, turns, turns)
        used = cpu_used(before, reading())
        count = turns * len(TURN_KINDS)
        for key, sample in samples.items():
            result.p50_ms.setdefault(key, []).append(statistics.median(sample.latencies_ms))
        result.orchestrator_cpu_ms.append(used["orchestrator"] * 1000 / count)
        result.server_cpu_ms.append(used["server"] * 1000 / count)
        result.other_processes_cpu_ms.append(used["other_processes"] * 1000 / count)
        if conversations:
            run = await concurrent_turns(
                driver, KINDS_BY_KEY["local_tool"], conversations, max(3, 300 // conversations)
            )
            result.turns_per_second.append(len(run.latencies_ms) / run.wall_seconds)
            await driver.end(run.handles)
    finally:
        await stack.stop_worker(ORCHESTRATOR_WORKER)


async def measure_responsiveness(stack: Stack, result: VariantResult) -> None:
    """With a slow model: how stale the progress line gets, and how long a new message waits."""
    await start_variant(stack, tuple(result.worker_args))
    try:
        driver = TemporalDriver(stack.client, AgentConfig())
        handle = await driver.start("responsiveness")
        await driver.turn(handle, KINDS_BY_KEY["plain"])
        turn = asyncio.ensure_future(driver.turn(handle, KINDS_BY_KEY["local_tool"]))
        slowest = 0.0
        while not turn.done():
            started = time.perf_counter()
            await handle.query(AgentWorkflow.get_status)
            slowest = max(slowest, (time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.1)
        await turn
        first = asyncio.ensure_future(driver.turn(handle, KINDS_BY_KEY["plain"]))
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        second = await handle.start_update(
            AgentWorkflow.send_message, "hello", wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        result.second_message_accepted_ms = (time.perf_counter() - started) * 1000
        result.slowest_status_query_ms = slowest
        await first
        await second.result()
        await driver.end([handle])
    finally:
        await stack.stop_worker(ORCHESTRATOR_WORKER)


def render(results: list[VariantResult], conversations: int) -> str:
    kinds = [kind.key for kind in TURN_KINDS]
    rows = [
        [
            result.name,
            *(median(result.p50_ms.get(kind, [])) for kind in kinds),
            median(result.orchestrator_cpu_ms),
            median(result.server_cpu_ms),
            median(result.turns_per_second),
            result.slowest_status_query_ms,
            result.second_message_accepted_ms,
            median(result.other_processes_cpu_ms),
        ]
        for result in results
    ]
    headers = ["variant", *(f"{kind} p50" for kind in kinds), "orch. CPU/turn"]
    headers += ["server CPU/turn", f"turns/s x{conversations}", "slowest query"]
    headers += ["2nd msg accepted", "others CPU/turn"]
    return (
        "Orchestrator worker variants (ms unless stated; medians over rounds; the last three "
        f"columns with a {RESPONSIVENESS_MODEL_MS:g} ms model)\n" + table(headers, rows)
    )


def round_summary(result: VariantResult) -> str:
    """The latest round of one variant, on one line."""
    p50 = {key: round(values[-1], 1) for key, values in result.p50_ms.items()}
    throughput = result.turns_per_second[-1] if result.turns_per_second else 0.0
    return (
        f"{result.name}: p50 {p50}; CPU ms/turn: orchestrator "
        f"{result.orchestrator_cpu_ms[-1]:.1f}, server {result.server_cpu_ms[-1]:.1f}, other "
        f"processes {result.other_processes_cpu_ms[-1]:.1f}; turns/s {throughput:.0f}"
    )


async def compare(args: argparse.Namespace) -> list[VariantResult]:
    use_offline_model(0)
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    results = [VariantResult(name, list(VARIANTS[name])) for name in names]
    logs = RESULTS / "logs"
    async with running_stack(
        "compare", low_latency=True, orchestrator_argv=None, model_latency_ms=0, log_dir=logs
    ) as stack:
        for round_number in range(1, args.rounds + 1):
            for result in results:
                await measure_round(stack, result, args.turns, args.conversations)
                progress(f"round {round_number} {round_summary(result)}")
    async with running_stack(
        "responsiveness",
        low_latency=True,
        orchestrator_argv=None,
        model_latency_ms=RESPONSIVENESS_MODEL_MS,
        log_dir=logs,
    ) as stack:
        for result in results:
            progress(f"responsiveness with a {RESPONSIVENESS_MODEL_MS:g} ms model: {result.name}")
            await measure_responsiveness(stack, result)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compare orchestrator worker variants.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--turns", type=int, default=40, help="sequential turns per kind per round")
    parser.add_argument("--conversations", type=int, default=50, help="0 skips throughput")
    parser.add_argument("--variants", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--json", type=Path, default=RESULTS / "compare.json")
    args = parser.parse_args(argv)
    results = asyncio.run(compare(args))
    print(render(results, args.conversations))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([asdict(result) for result in results], indent=2) + "\n")
    print(f"\nJSON: {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
    exit_now(0)  # flushed, and no interpreter teardown while the SDK's threads run

"""What telemetry costs the orchestrator worker: CPU per turn with it off, on, and exporting traces.

Run it with `uv run python bench/telemetry_cost.py [--rounds 6] [--turns 10] [--before COMMIT]`.
One low-latency dev server and the two Nexus workers stay up; each round starts
`orchestrator_worker.py` once per variant, in turn, and measures the worker's CPU (from
`/proc/<pid>/stat`) over `--turns` sequential turns of each kind (offline model, 0 ms), after a
warm-up. Interleaving the variants round by round spreads the noise of other work on this shared
machine over all of them alike; the figures are medians over rounds, and each round's line, with
the CPU other processes used, goes to stderr. The variants:

- `before` (with `--before COMMIT`): the orchestrator worker of an earlier commit, without any
  telemetry code (extracted with `git archive`, run with this environment's packages);
- `off`: no `PROMETHEUS_BIND_ADDRESS`, no OTLP endpoint;
- `on`: `PROMETHEUS_BIND_ADDRESS` set (the SDK's metrics and the agent's own), no exporter
  configured, hence no tracing: the configuration the issue's 5% bound is about;
- `traced`: `on` plus `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an in-process OTLP sink that
  accepts and drops the spans, for the price of tracing itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from aiohttp import web

from app.agent.llm.client import READY_TEXT
from app.agent.models import AgentConfig
from app.core.names import ORCHESTRATOR, PROJECT_ROOT
from app.core.processes import free_port
from bench.results import table
from bench.run import cpu_used, progress, use_offline_model
from bench.stack import (
    ORCHESTRATOR_PROGRAM,
    ORCHESTRATOR_WORKER,
    WORKER_READY_TEXT,
    Stack,
    cpu_seconds,
    machine_busy_seconds,
    running_stack,
    spawn,
    wait_for_log,
    worker_env,
)
from bench.workload import TURN_KINDS, TemporalDriver, sequential_turns

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("off", "on", "traced")


def extract(commit: str, folder: Path) -> Path:
    """The orchestrator worker program of `commit`, in `folder` (its own `app/` beside it)."""
    archive = subprocess.run(
        ["git", "archive", commit], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    # Python puts the program's folder first on sys.path: its `app` wins over this checkout's.
    return folder / ORCHESTRATOR.program


async def otlp_sink() -> tuple[web.AppRunner, str]:
    """An OTLP/HTTP endpoint that accepts spans and drops them; returns it and its URL."""
    app = web.Application()

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app.router.add_post("/v1/traces", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def variant_env(stack: Stack, variant: str, sink: str) -> tuple[dict[str, str], str | None]:
    """The worker's environment for `variant`, and its metrics address if it serves one."""
    env = worker_env(stack.address, 0)
    for name in [n for n in env if n.startswith("OTEL_") or n == "PROMETHEUS_BIND_ADDRESS"]:
        del env[name]
    if variant == "off":
        return env, None
    address = f"127.0.0.1:{free_port()}"
    env["PROMETHEUS_BIND_ADDRESS"] = address
    if variant == "traced":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink
    return env, address


async def measure(
    stack: Stack, variant: str, sink: str, turns: int, earlier_program: Path | None
) -> tuple[float, float]:
    """One round of one variant: the worker's and the other processes' CPU ms per turn."""
    env, metrics = variant_env(stack, "off" if variant == "before" else variant, sink)
    program = ORCHESTRATOR_PROGRAM
    if variant == "before" and earlier_program is not None:
        program = [str(earlier_program)]
    argv = [sys.executable, *program]
    child = await spawn(f"{stack.name}-{ORCHESTRATOR_WORKER}-{variant}", argv, env, stack.log_dir)
    stack.workers[ORCHESTRATOR_WORKER] = child
    try:
        await wait_for_log(child, WORKER_READY_TEXT)
        await wait_for_log(child, READY_TEXT)
        driver = TemporalDriver(stack.client, AgentConfig())
        await sequential_turns(driver, TURN_KINDS, 1, 1)  # warm-up: caches, first imports

        def reading() -> dict[str, float]:
            return {"worker": cpu_seconds(child.pid), "machine": machine_busy_seconds()}

        before = reading()
        await sequential_turns(driver, TURN_KINDS, turns, turns)
        used = cpu_used(before, reading())
        if metrics is not None:
            # The metrics are really there: the turns just run were counted.
            with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
                assert b"agent_turns_total" in response.read(), "no agent metrics served"
    finally:
        await stack.stop_worker(ORCHESTRATOR_WORKER)
    count = turns * len(TURN_KINDS)
    return used["worker"] * 1000 / count, used["other_processes"] * 1000 / count


async def main(args: argparse.Namespace) -> None:
    use_offline_model(0)
    chosen = tuple(args.variants.split(",")) if args.variants else VARIANTS
    variants = (("before",) if args.before else ()) + chosen
    cpu: dict[str, list[float]] = {variant: [] for variant in variants}
    others: dict[str, list[float]] = {variant: [] for variant in variants}
    checkout = tempfile.TemporaryDirectory(prefix="telemetry-before-")
    before = extract(args.before, Path(checkout.name)) if args.before else None
    sink_runner, sink = await otlp_sink()
    try:
        async with running_stack(
            "telemetry",
            low_latency=True,
            orchestrator_argv=None,
            model_latency_ms=0,
            log_dir=RESULTS / "logs",
        ) as stack:
            for round_number in range(1, args.rounds + 1):
                # Alternate the order too, so neither variant always runs first.
                order = variants if round_number % 2 else tuple(reversed(variants))
                for variant in order:
                    worker_ms, other_ms = await measure(stack, variant, sink, args.turns, before)
                    cpu[variant].append(worker_ms)
                    others[variant].append(other_ms)
                    progress(
                        f"round {round_number} {variant}: worker {worker_ms:.2f} ms CPU/turn, "
                        f"other processes {other_ms:.1f} ms/turn"
                    )
    finally:
        await sink_runner.cleanup()
        checkout.cleanup()
    off = statistics.median(cpu["off"])
    rows = [
        [
            variant,
            round(statistics.median(cpu[variant]), 2),
            f"{(statistics.median(cpu[variant]) / off - 1) * 100:+.1f}%",
            round(min(cpu[variant]), 2),
            round(max(cpu[variant]), 2),
            round(statistics.median(others[variant]), 1),
        ]
        for variant in variants
    ]
    headers = ["variant", "worker CPU ms/turn (median)", "vs off", "min", "max"]
    headers.append("other processes ms/turn")
    print(
        f"Orchestrator worker CPU per turn, {args.rounds} interleaved rounds of "
        f"{args.turns} turns x {len(TURN_KINDS)} kinds\n" + table(headers, rows)
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--turns", type=int, default=10, help="turns of each kind per round")
    parser.add_argument("--before", help="also run the orchestrator worker of this commit")
    parser.add_argument("--variants", help=f"a comma-separated subset of {','.join(VARIANTS)}")
    asyncio.run(main(parser.parse_args()))

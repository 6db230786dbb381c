"""The figures of `bench/origin.py` (the origin sample and this project side by side), and their
rich tables: turn latency, history per turn, CPU per turn per process, and the issue's targets
with PASS or MISS.
"""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from bench.results import percentile

KIND_TITLES = {
    "plain": "plain answer",
    "local": "local tool (calculator)",
    "it": "Nexus get_ip",
    "finance": "Nexus stock_price",
}
# The targets: speed-up of the p50 over the origin's, and the orchestrator side's CPU.
SPEED_UP_TARGETS = {"plain": 1.5, "local": 4.0, "it": 5.0, "finance": 5.0}
# The other targets, which this side-by-side run does not measure.
NOT_MEASURED_HERE = (
    ("workflow tasks per turn, a watched 3 s streamed answer", "≤ 8"),
    ("first text of a watched streamed answer", "≤ 0.35 s"),
    ("turns per second, 50 concurrent conversations", "≥ 2x today's"),
    ("`uv run demo` to its first prompt, warm", "≤ 3 s"),
)
CPU_TARGETS_MS = {"plain": 15.0, "local": 25.0, "it": 25.0, "finance": 25.0}


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
    for name, wanted in NOT_MEASURED_HERE:
        targets.add_row(name, "-", wanted, "not measured here")
    console.print(targets)

"""The benchmark's figures as dataclasses, and their rendering as text tables and JSON.

Every figure printed is a field of `Report`, and the JSON file is `dataclasses.asdict(report)`, so
the table and the file can never disagree. Latencies are in milliseconds, memory in MiB.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bench.workload import HistoryTotals

MIB = 1024 * 1024


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile with linear interpolation between ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Percentiles:
    """Summary of a sample of durations in milliseconds."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        return cls(
            n=len(values),
            mean=sum(values) / len(values) if values else math.nan,
            p50=percentile(values, 0.50),
            p95=percentile(values, 0.95),
            p99=percentile(values, 0.99),
            max=max(values) if values else math.nan,
        )


@dataclass
class HistoryPerTurn:
    """Event history added per turn, averaged over the timed turns of one kind."""

    events: float
    bytes: float
    workflow_tasks: float
    activity_tasks: float
    local_activities: float
    nexus_operations: float
    by_type: dict[str, float]
    # Mean milliseconds per turn in each span the event timestamps show (workflow task queued,
    # in the worker, activity queued, running, Nexus operation); concurrent spans add up.
    spans_ms: dict[str, float]

    @classmethod
    def of(cls, totals: HistoryTotals, turns: int) -> HistoryPerTurn:
        per_turn = {name: count / turns for name, count in sorted(totals.by_type.items())}
        return cls(
            events=totals.events / turns,
            bytes=totals.bytes / turns,
            workflow_tasks=per_turn.get("WORKFLOW_TASK_SCHEDULED", 0.0),
            activity_tasks=per_turn.get("ACTIVITY_TASK_SCHEDULED", 0.0),
            # Each local activity leaves one marker in history.
            local_activities=per_turn.get("MARKER_RECORDED", 0.0),
            nexus_operations=per_turn.get("NEXUS_OPERATION_SCHEDULED", 0.0),
            by_type=per_turn,
            spans_ms={name: round(value / turns, 3) for name, value in totals.spans_ms.items()},
        )


@dataclass
class KindResult:
    """One turn kind on one Temporal stack: latency and history per turn."""

    kind: str
    label: str
    latency_ms: Percentiles
    history: HistoryPerTurn


@dataclass
class LowerBoundResult:
    """One turn kind in the plain in-process loop: no Temporal."""

    kind: str
    label: str
    llm_calls: float
    latency_ms: Percentiles
    planner_ms: Percentiles
    tool_ms: Percentiles


@dataclass
class OverheadResult:
    """What Temporal adds to one turn kind, and how it compares with the other two runs."""

    kind: str
    label: str
    llm_calls: float
    model_ms: float
    tool_ms: float
    overhead_ms: Percentiles
    added_over_lower_bound_p50_ms: float
    ratio_to_lower_bound_p50: float
    baseline_p50_ms: float | None
    speedup_over_baseline_p50: float | None
    speedup_over_baseline_p95: float | None


@dataclass
class ThroughputResult:
    """Concurrent conversations on one orchestrator worker, each sending turns in sequence."""

    conversations: int
    turns: int
    wall_seconds: float
    turns_per_second: float
    latency_ms: Percentiles
    cpu_ms_per_turn: dict[str, float]


@dataclass
class StartupResult:
    """`uv run demo` from launch to its ready line, and to its first answer."""

    command: list[str]
    ready_seconds: float | None = None
    first_answer_seconds: float | None = None
    ready_line: str | None = None
    demo_status_lines: list[str] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class ProfileResult:
    """py-spy's samples of the orchestrator worker during the sequential turns."""

    raw_path: str
    summary: str


@dataclass
class Report:
    """Everything one benchmark run measured."""

    settings: dict[str, Any]
    environment: dict[str, Any]
    notes: list[str]
    lower_bound: list[LowerBoundResult] = field(default_factory=list)
    main: list[KindResult] = field(default_factory=list)
    baseline: list[KindResult] = field(default_factory=list)
    overhead: list[OverheadResult] = field(default_factory=list)
    cpu_ms_per_sequential_turn: dict[str, dict[str, float]] = field(default_factory=dict)
    # Mean CPU cores that processes other than the benchmark's kept busy, per phase.
    other_processes_cores: dict[str, float] = field(default_factory=dict)
    throughput: list[ThroughputResult] = field(default_factory=list)
    rss_mib: dict[str, dict[str, float]] = field(default_factory=dict)
    startup: StartupResult | None = None
    profile: ProfileResult | None = None
    # CPU ms of one litellm.acompletion call (offline provider, in process): what a real
    # provider's planning call adds to the figures here, besides the network and the model.
    planning_call_cpu_ms: dict[str, float] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, allow_nan=True) + "\n")


def overhead(
    lower: LowerBoundResult,
    main: KindResult,
    baseline: KindResult | None,
    model_latency_ms: float,
    main_latencies: Sequence[float],
) -> OverheadResult:
    """Turn latency minus the model's time (calls x configured latency) and the tools' time."""
    model_ms = lower.llm_calls * model_latency_ms
    tool_ms = lower.tool_ms.p50
    base = baseline.latency_ms if baseline else None
    return OverheadResult(
        kind=main.kind,
        label=main.label,
        llm_calls=lower.llm_calls,
        model_ms=model_ms,
        tool_ms=tool_ms,
        overhead_ms=Percentiles.of([value - model_ms - tool_ms for value in main_latencies]),
        added_over_lower_bound_p50_ms=main.latency_ms.p50 - lower.latency_ms.p50,
        ratio_to_lower_bound_p50=main.latency_ms.p50 / lower.latency_ms.p50,
        baseline_p50_ms=base.p50 if base else None,
        speedup_over_baseline_p50=base.p50 / main.latency_ms.p50 if base else None,
        speedup_over_baseline_p95=base.p95 / main.latency_ms.p95 if base else None,
    )


# ---------------------------------------------------------------------------------------------
# Text rendering


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A `rich` table as text: first column left-aligned, the others right-aligned."""
    shown = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for index, header in enumerate(headers):
        shown.add_column(header, justify="left" if index == 0 else "right")
    for row in rows:
        shown.add_row(*(cell if isinstance(cell, str) else fmt(cell) for cell in row))
    text = io.StringIO()
    Console(file=text, width=200, color_system=None).print(shown)
    return "\n".join(line.rstrip() for line in text.getvalue().splitlines()).strip("\n")


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"
    return str(value)


# Short column names for the processes whose CPU time is measured.
CPU_COLUMNS = {
    "dev_server": "server",
    "orchestrator_worker": "orch.",
    "it_nexus_worker": "IT",
    "finance_nexus_worker": "fin.",
    "bench_client": "client",
    "other_processes": "others",
}


def cpu_summary(cpu: dict[str, float]) -> str:
    return ", ".join(f"{CPU_COLUMNS.get(name, name)} {value:.1f}" for name, value in cpu.items())


def render(report: Report) -> str:
    """The whole report as text, one section per measurement."""
    sections = [
        _render_background(report),
        _render_latency(report),
        _render_comparison(report),
        _render_throughput(report),
        _render_footprint(report),
        _render_history(report),
        _render_spans("main", report.main),
        _render_spans("baseline", report.baseline),
        _render_startup(report),
        _render_profile(report),
        _render_targets(report),
        "Notes:\n" + "\n".join(f"- {note}" for note in report.notes),
    ]
    return "\n\n".join(section for section in sections if section)


def _render_background(report: Report) -> str:
    cores = report.other_processes_cores
    if not cores:
        return ""
    phases = ", ".join(f"{phase} {value:.2f}" for phase, value in cores.items())
    line = f"Background load (CPU cores used by other processes, of {report.environment['cpus']}): "
    warning = ""
    if max(cores.values()) > 0.2:
        warning = (
            "\nWARNING: other work shared this machine; latencies and turns/s are pessimistic."
        )
    return line + phases + warning


def _render_latency(report: Report) -> str:
    by_kind = {result.kind: result for result in report.overhead}
    rows = []
    for result in report.main:
        over = by_kind.get(result.kind)
        rows.append(
            [
                result.label,
                over.llm_calls if over else None,
                result.latency_ms.p50,
                result.latency_ms.p95,
                result.latency_ms.p99,
                over.model_ms if over else None,
                f"{over.tool_ms:.2f}" if over else None,
                over.overhead_ms.p50 if over else None,
                over.overhead_ms.p95 if over else None,
                over.overhead_ms.p99 if over else None,
            ]
        )
    n = report.main[0].latency_ms.n if report.main else 0
    title = (
        f"1. Turn latency, ms ({n} sequential turns per kind; "
        f"model latency {report.settings['model_latency_ms']:g} ms per LLM call; token streaming "
        f"{'on' if report.settings.get('stream_text', True) else 'off'})"
    )
    headers = ["turn kind", "LLM calls", "p50", "p95", "p99", "model", "tools"]
    headers += ["overhead p50", "p95", "p99"]
    return title + "\n" + table(headers, rows)


def _render_comparison(report: Report) -> str:
    lower = {result.kind: result for result in report.lower_bound}
    rows = []
    for result in report.overhead:
        bound = lower[result.kind]
        rows.append(
            [
                result.label,
                bound.latency_ms.p50,
                bound.planner_ms.p50,
                result.added_over_lower_bound_p50_ms,
                f"x{result.ratio_to_lower_bound_p50:.1f}",
                result.baseline_p50_ms,
                _times(result.speedup_over_baseline_p50),
                _times(result.speedup_over_baseline_p95),
            ]
        )
    headers = ["turn kind", "no-Temporal p50", "planner p50", "Temporal adds"]
    headers += ["ratio", "baseline p50", "speed-up p50", "p95"]
    return (
        "2-3. Lower bound (same planner and tools, plain in-process loop) and baseline (this "
        "project on the dev server's default settings, plain activities, no eager start), ms\n"
        + table(headers, rows)
    )


def _times(value: float | None) -> str:
    return "-" if value is None else f"x{value:.1f}"


def _render_history(report: Report) -> str:
    baseline = {result.kind: result for result in report.baseline}
    rows = []
    for result in report.main:
        history = result.history
        base = baseline.get(result.kind)
        rows.append(
            [
                result.label,
                history.workflow_tasks,
                history.activity_tasks,
                history.local_activities,
                history.nexus_operations,
                history.events,
                history.bytes,
                base.history.workflow_tasks if base else None,
                base.history.activity_tasks if base else None,
                base.history.events if base else None,
            ]
        )
    headers = ["turn kind", "workflow tasks", "activities", "local act.", "Nexus ops"]
    headers += ["events", "bytes", "baseline: WFTs", "activities", "events"]
    cpu = report.cpu_ms_per_sequential_turn
    cpu_lines = [
        f"CPU ms per sequential turn, {stack} stack (all kinds): {cpu_summary(per_process)}"
        for stack, per_process in cpu.items()
    ]
    return (
        "5b. Event history per turn (steady state; workflow tasks = WorkflowTaskScheduled)\n"
        + "\n".join([table(headers, rows), *cpu_lines])
    )


def _render_spans(stack: str, results: Sequence[KindResult]) -> str:
    if not results:
        return ""
    names = list(results[0].history.spans_ms)
    rows = []
    for result in results:
        spans = result.history.spans_ms
        rest = result.latency_ms.mean - sum(spans.values())
        rows.append([result.label, result.latency_ms.mean, *spans.values(), rest])
    headers = ["turn kind", "turn (mean)", *names, "rest"]
    return (
        f"Where the time goes, {stack} stack: mean ms per turn from event timestamps ('rest' = "
        "the Update's trips between client, server and worker, and server work between tasks)\n"
        + table(headers, rows)
    )


def _render_throughput(report: Report) -> str:
    if not report.throughput:
        return ""
    names = list(report.throughput[0].cpu_ms_per_turn)
    rows = [
        [
            result.conversations,
            result.turns,
            result.turns_per_second,
            result.latency_ms.p50,
            result.latency_ms.p99,
            *(result.cpu_ms_per_turn[name] for name in names),
        ]
        for result in report.throughput
    ]
    headers = ["conversations", "turns", "turns/s", "p50 ms", "p99 ms"]
    headers += [CPU_COLUMNS.get(name, name) for name in names]
    return (
        "4. Throughput: local-tool turns on one orchestrator worker "
        "(last columns: CPU ms per turn by process)\n" + table(headers, rows)
    )


def _render_footprint(report: Report) -> str:
    if not report.rss_mib:
        return ""
    moments = list(report.rss_mib)
    processes = list(report.rss_mib[moments[0]])
    rows = [[name, *(report.rss_mib[m].get(name) for m in moments)] for name in processes]
    return "5a. Resident memory (VmRSS), MiB\n" + table(["process", *moments], rows)


def _render_startup(report: Report) -> str:
    startup = report.startup
    if startup is None:
        return ""
    if startup.skipped:
        return f"6. Start-up of `uv run demo`: skipped ({startup.skipped})"
    lines = [
        f"6. Start-up: `{' '.join(startup.command)}` ready in {fmt(startup.ready_seconds)} s "
        f"(line {startup.ready_line!r}); first answer at {fmt(startup.first_answer_seconds)} s",
        *(f"   demo: {line}" for line in startup.demo_status_lines),
    ]
    return "\n".join(lines)


def _render_profile(report: Report) -> str:
    if report.profile is None:
        return ""
    return (
        f"Profile of the orchestrator worker during the sequential turns (py-spy; raw stacks in "
        f"{report.profile.raw_path}, open them in https://www.speedscope.app)\n"
        + report.profile.summary
    )


def _render_targets(report: Report) -> str:
    if not report.targets:
        return ""
    rows = [
        [
            t["target"],
            "-" if t["measured"] is None else f"{t['measured']:.2f}",
            t["limit"],
            "PASS" if t["met"] else "MISS",
        ]
        for t in report.targets
    ]
    cores = report.other_processes_cores
    load = (
        f" (background load: other processes used up to {max(cores.values()):.2f} of "
        f"{report.environment['cpus']} cores; compare figures at similar load)"
        if cores
        else ""
    )
    calls = report.planning_call_cpu_ms
    litellm = (
        "\nCPU of one planning call in this process (no Temporal): the offline model alone "
        f"{calls['model']:.2f} ms; through litellm.acompletion {calls['litellm']:.2f} ms; "
        f"streamed through LiteLLM {calls['litellm streamed']:.2f} ms. The difference is "
        "LiteLLM's own work, which a real provider pays too."
        if calls
        else ""
    )
    return f"Targets{load}\n" + table(["target", "measured", "limit", ""], rows) + litellm

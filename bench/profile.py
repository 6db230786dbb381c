"""Sampling the orchestrator worker with py-spy while the benchmark loads it, and summarising.

`bench/run.py --profile` starts `py-spy record` on the orchestrator worker's process for the
sequential turns (the dev-dependency `py-spy`, whose binary is in the virtual environment). It
writes two files to `bench/results/` (git-ignored): a speedscope file to open at
https://www.speedscope.app, and py-spy's raw "collapsed stacks" (one line per distinct stack with
its sample count), which `summarise` reads to print the functions that cost most, inclusive (the
function and what it calls) and by self time, so a run shows where the CPU goes without a browser.
Run `python -m bench.profile FILE.txt` to summarise an earlier raw file.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# "function (path/to/file.py:123)": the line number is dropped so that one function is one row.
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::\d+)?\)$")
# Frames every stack of the worker passes through; they say nothing about where the cost is.
_PLUMBING = ("asyncio/", "<frozen", "threading.py", "concurrent/futures/thread.py")


def py_spy_binary() -> str | None:
    """py-spy from the virtual environment, or from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    """A running `py-spy record`, writing one file in the format `--format` names."""

    process: asyncio.subprocess.Process
    path: Path

    async def stop(self) -> None:
        """Stop sampling; py-spy writes its file when interrupted."""
        if self.process.returncode is None:
            self.process.send_signal(2)  # SIGINT, as Ctrl-C: py-spy then writes its output
        await asyncio.wait_for(self.process.wait(), 60)


async def record(pid: int, path: Path, file_format: str, rate: int = 200) -> Recording:
    """Start sampling process `pid` (all its Python threads) into `path`.

    py-spy pauses the process for each sample (its default): `--nonblocking` made the stacks of
    a worker that waits for a CPU look busy in whatever call it was preempted, which misleads on
    a loaded machine. Figures of a profiled run are therefore a little slower.
    """
    binary = py_spy_binary()
    if binary is None:
        raise RuntimeError("py-spy not found: run `uv sync` (it is a dev dependency)")
    path.parent.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        binary,
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--format",
        file_format,
        "--output",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return Recording(process, path)


def _function(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match["file"]
    # Keep the package path from site-packages on (temporalio/worker/_workflow.py).
    file = file.split("site-packages/", 1)[-1]
    return f"{match['function']} ({file})"


@dataclass
class Summary:
    """Where the samples fell: inclusive and self counts per function."""

    samples: int
    inclusive: Counter[str]
    self_time: Counter[str]

    def render(self, top: int = 25) -> str:
        if not self.samples:
            return "no samples"

        def rows(counter: Counter[str]) -> list[str]:
            return [
                f"  {100 * count / self.samples:5.1f}%  {name}"
                for name, count in counter.most_common(top)
            ]

        return "\n".join(
            [
                f"{self.samples} samples of active threads (idle waits excluded)",
                "Inclusive (the function and what it calls):",
                *rows(self.inclusive),
                "Self time (samples in the function's own code):",
                *rows(self.self_time),
            ]
        )


def summarise(raw: str) -> Summary:
    """Inclusive and self sample counts per function from py-spy's raw collapsed stacks."""
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")]
        useful = [frame for frame in frames if not any(part in frame for part in _PLUMBING)]
        samples += count
        for name in set(useful):
            inclusive[name] += count
        if frames:
            self_time[frames[-1]] += count
    return Summary(samples, inclusive, self_time)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Summarise a py-spy raw (collapsed) file.")
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(summarise(args.raw.read_text()).render(args.top))


if __name__ == "__main__":
    main()

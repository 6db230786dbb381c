"""How the programs end: exit codes of `python -m app.core.setup` and `client.py`, run after run.

    uv run python bench/exits.py              # 20 runs of each
    uv run python bench/exits.py --runs 50

Starts its own dev server (free port) and the orchestrator worker, then runs each program again
and again as a person would: setup against the server, the chat client with one piped message
then end of input. It also runs setup the way it used to end (`asyncio.run` and a normal
interpreter teardown) for comparison. A run counts as clean when it exits 0 and printed all of
its output (setup's last line, the chat's answer). Prints one line per program with the exit
codes seen and the time per run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from app.core.exiting import exit_now
from app.core.names import PROJECT_ROOT
from bench.stack import Stack, running_stack, worker_env

# Setup as it ended before `exit_now`: asyncio.run, then the interpreter's own teardown.
SETUP_BEFORE = "import asyncio; from app.core.setup import main; asyncio.run(main())"


@dataclass
class Runs:
    """The outcomes of one program's runs."""

    name: str
    codes: Counter[int] = field(default_factory=Counter)
    incomplete: int = 0
    seconds: list[float] = field(default_factory=list)

    def line(self) -> str:
        clean = self.codes[0] - self.incomplete
        total = sum(self.codes.values())
        codes = ", ".join(f"exit {code}: {n}" for code, n in sorted(self.codes.items()))
        mean = sum(self.seconds) / len(self.seconds) if self.seconds else 0.0
        return (
            f"{self.name:<34} clean {clean:>3}/{total:<3} ({codes}; output lost in "
            f"{self.incomplete}), {mean:.2f} s per run"
        )


async def run_once(argv: list[str], env: dict[str, str], stdin: str) -> tuple[int, str, float]:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        cwd=PROJECT_ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(stdin.encode()), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), time.monotonic() - started


async def measure(stack: Stack, runs: int) -> list[Runs]:
    env = worker_env(stack.address, stack.model_latency_ms)
    programs = [
        ("python -m app.core.setup", ["-m", "app.core.setup"], "", "endpoint finance"),
        ("setup, ending as before", ["-c", SETUP_BEFORE], "", "endpoint finance"),
        ("client.py (one message, then EOF)", ["client.py"], "Echo hello\n", "Agent: hello"),
    ]
    results = []
    for name, argv, stdin, last_output in programs:
        outcome = Runs(name)
        for _ in range(runs):
            code, out, seconds = await run_once(argv, env, stdin)
            outcome.codes[code] += 1
            outcome.seconds.append(seconds)
            if code == 0 and last_output not in out:
                outcome.incomplete += 1
        print(outcome.line(), flush=True)
        results.append(outcome)
    return results


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Exit codes of setup and the chat client.")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-exits-") as logs:
        async with running_stack(
            "exits",
            low_latency=True,
            orchestrator_argv=["orchestrator_worker.py"],
            model_latency_ms=0,
            log_dir=Path(logs),
        ) as stack:
            await measure(stack, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
    exit_now(0)  # flushed, and no interpreter teardown while the SDK's threads run

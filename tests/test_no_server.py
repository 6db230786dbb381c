"""Every program that needs a Temporal server says so in one line when none is running.

The three worker programs and `python -m app.core.setup` run as people run them, as processes,
pointed at a port where nothing listens: each prints one line on stderr naming what failed, the
address and how to start a server, and exits with code 1, as the chat client does. With a server,
setup exits 0 with all its output, run after run (it used to crash at exit now and then).
"""

from __future__ import annotations

import pytest
from temporalio.testing import WorkflowEnvironment

from app.core.names import FINANCE, IT, NEXUS_DEPLOYMENTS, ORCHESTRATOR
from app.core.processes import free_port
from tests.stack_processes import program_env, run_program


def no_server_line(port: int) -> str:
    return (
        f"cannot reach Temporal at 127.0.0.1:{port}: is the server running? Start it with "
        "`uv run temporal server start-dev`, or run everything with `uv run demo` "
        "(connection refused)"
    )


@pytest.mark.parametrize(
    ("args", "who"),
    [
        ([ORCHESTRATOR.program], ORCHESTRATOR.name),
        ([IT.program], IT.name),
        ([FINANCE.program], FINANCE.name),
        (["-m", "app.core.setup"], "setup"),
    ],
    ids=["orchestrator", "it", "finance", "setup"],
)
async def test_a_program_without_a_server_is_one_line_and_exit_1(args: list[str], who: str):
    port = free_port()

    result = await run_program(
        args, env=program_env(TEMPORAL_ADDRESS=f"127.0.0.1:{port}"), timeout=60
    )

    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr == f"{who}: {no_server_line(port)}\n"


async def test_a_worker_that_refuses_its_settings_is_one_line_and_exit_1():
    result = await run_program(
        [ORCHESTRATOR.program], env=program_env(AGENT_MAX_TOKENS="lots"), timeout=60
    )

    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr == (
        f"{ORCHESTRATOR.name}: AGENT_MAX_TOKENS must be a whole number of tokens, not 'lots'\n"
    )


@pytest.mark.timeout(180)
async def test_setup_exits_0_with_all_its_output_run_after_run(dev_env: WorkflowEnvironment):
    address = dev_env.client.service_client.config.target_host
    last = f"endpoint {NEXUS_DEPLOYMENTS[-1].endpoint} -> "
    for _ in range(5):
        result = await run_program(
            ["-m", "app.core.setup"], env=program_env(TEMPORAL_ADDRESS=address), timeout=60
        )
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        assert result.stdout.splitlines()[-1].startswith(last), result.stdout

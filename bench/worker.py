"""The orchestrator worker with the knobs the benchmark turns: eager activities, pollers, caches.

`orchestrator_worker.py` is the program users run; this one builds its worker with the same
factory (`app.agent.worker.orchestrator_worker`) and adds the `Worker` options the benchmark
compares. The default-settings run (the "baseline") runs it with
`--disable-eager-activity-execution`. Run it with
`python bench/worker.py --help`; it reads `TEMPORAL_ADDRESS` and the model settings from the
environment like every worker program.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
from typing import Any

from temporalio.worker import PollerBehaviorSimpleMaximum, UnsandboxedWorkflowRunner

from app.agent.llm.client import READY_TEXT, choose_model, litellm_ready
from app.agent.worker import orchestrator_worker
from app.core.connection import connect
from app.core.exiting import exit_now
from app.core.names import ORCHESTRATOR
from app.core.worker_runner import configure_logging, run_until_stopped


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--disable-eager-activity-execution", action="store_true")
    parser.add_argument("--max-concurrent-workflow-tasks", type=int)
    parser.add_argument("--max-concurrent-activities", type=int)
    parser.add_argument("--workflow-task-pollers", type=int, help="default 5")
    parser.add_argument("--activity-task-pollers", type=int, help="default 5")
    parser.add_argument("--max-cached-workflows", type=int, help="default 1000")
    parser.add_argument("--nonsticky-to-sticky-poll-ratio", type=float, help="default 0.2")
    parser.add_argument(
        "--unsandboxed", action="store_true", help="run workflows without the sandbox"
    )
    parser.add_argument(
        "--workflow",
        default="app.agent.workflow:AgentWorkflow",
        help="MODULE:CLASS of the agent workflow to register, e.g. a candidate change from "
        "bench/variants.py (default: %(default)s)",
    )
    return parser.parse_args(argv)


def worker_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `Worker` keyword arguments the command line asks for; unset ones keep SDK defaults."""
    options: dict[str, Any] = {
        "disable_eager_activity_execution": args.disable_eager_activity_execution
    }
    plain = {
        "max_concurrent_workflow_tasks": args.max_concurrent_workflow_tasks,
        "max_concurrent_activities": args.max_concurrent_activities,
        "max_cached_workflows": args.max_cached_workflows,
        "nonsticky_to_sticky_poll_ratio": args.nonsticky_to_sticky_poll_ratio,
    }
    options.update({key: value for key, value in plain.items() if value is not None})
    if args.workflow_task_pollers is not None:
        options["workflow_task_poller_behavior"] = PollerBehaviorSimpleMaximum(
            args.workflow_task_pollers
        )
    if args.activity_task_pollers is not None:
        options["activity_task_poller_behavior"] = PollerBehaviorSimpleMaximum(
            args.activity_task_pollers
        )
    if args.unsandboxed:
        options["workflow_runner"] = UnsandboxedWorkflowRunner()
    return options


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging()
    # Loaded before polling, unlike orchestrator_worker.py: variants are compared warm.
    await litellm_ready()
    choice = await asyncio.to_thread(choose_model)
    options = worker_options(args)
    logging.getLogger(__name__).info(
        "%s %s; workflow %s; worker options: %s",
        READY_TEXT,
        choice.describe(),
        args.workflow,
        options,
    )
    module, _, class_name = args.workflow.partition(":")
    workflow_class = getattr(importlib.import_module(module), class_name)
    client = await connect(ORCHESTRATOR.namespace)
    worker = orchestrator_worker(client, workflows=[workflow_class], **options)
    await run_until_stopped(worker, "Benchmark orchestrator worker")


if __name__ == "__main__":
    asyncio.run(main())
    exit_now(0)  # flushed, and no interpreter teardown while the SDK's threads run

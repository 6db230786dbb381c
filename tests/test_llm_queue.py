"""The LLM's own task queue: which queue plans, the worker's parts, and that old histories replay.

A workflow on the orchestrator's queue schedules `plan_next_action` on `LLM_TASK_QUEUE`; histories
recorded before that scheduled it on the workflow's own queue. Core's determinism check compares an
activity's id and type, not its queue: the golden histories, moved onto the orchestrator's queue
(so that today's code schedules on the LLM queue while the history says otherwise), replay.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from app.agent.workflow import AgentWorkflow
from app.core.names import LLM_TASK_QUEUE, ORCHESTRATOR, llm_task_queue
from orchestrator_worker import parse_parts
from tests.test_golden_histories import agent_histories


def on_orchestrator_queue(path: Path) -> tuple[WorkflowHistory, int]:
    """The history with its workflow moved onto the orchestrator's queue (activities stay)."""
    events = json.loads(path.read_text())
    old = events["events"][0]["workflowExecutionStartedEventAttributes"]["taskQueue"]["name"]
    planned_on_old_queue = 0
    for event in events["events"]:
        for key in (
            "workflowExecutionStartedEventAttributes",
            "workflowTaskScheduledEventAttributes",
        ):
            if key in event:
                event[key]["taskQueue"]["name"] = ORCHESTRATOR.task_queue
        scheduled = event.get("activityTaskScheduledEventAttributes")
        if scheduled and scheduled["activityType"]["name"] == "plan_next_action":
            assert scheduled["taskQueue"]["name"] == old
            planned_on_old_queue += 1
    started = events["events"][0]["workflowExecutionStartedEventAttributes"]
    return WorkflowHistory.from_json(started["workflowId"], events), planned_on_old_queue


def test_the_orchestrator_plans_on_the_llm_queue_and_other_queues_on_their_own():
    assert llm_task_queue(ORCHESTRATOR.task_queue) == LLM_TASK_QUEUE != ORCHESTRATOR.task_queue
    assert llm_task_queue("agent-test-123") == "agent-test-123"


def test_the_worker_runs_both_parts_unless_told_to_run_one():
    assert parse_parts([]) == ("workflows", "llm")
    assert parse_parts(["--only", "llm"]) == ("llm",)
    assert parse_parts(["--only", "workflows"]) == ("workflows",)
    with pytest.raises(SystemExit):
        parse_parts(["--only", "tools"])


async def test_histories_that_planned_on_the_workflows_queue_replay_on_the_llm_queue():
    replayer = Replayer(workflows=[AgentWorkflow], data_converter=pydantic_data_converter)
    planned = 0
    for path in agent_histories():
        history, count = on_orchestrator_queue(path)
        planned += count
        await replayer.replay_workflow(history)
    assert planned > 0

"""Candidate changes to the agent workflow, measured by `bench/compare.py` without editing app/.

Each variant subclasses `app.agent.workflow.AgentWorkflow` under the same workflow name
and overrides one step, so the rest of the loop stays the production code. Only the benchmark
registers them (`python bench/worker.py --workflow bench.variants:LLMLocalActivityWorkflow`).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

# Imported like app/agent/workflow.py imports them; app.agent.workflow itself is re-imported by the
# sandbox for each run, as it is in production.
from app.agent.workflow import AgentWorkflow, LLMFailure
from app.core.errors import failure_message

with workflow.unsafe.imports_passed_through():
    from app.agent.llm.activity import plan_next_action
    from app.agent.models import AgentInput, AgentResult, Message
    from app.core.names import AGENT_WORKFLOW_NAME


@workflow.defn(name=AGENT_WORKFLOW_NAME)
class LLMLocalActivityWorkflow(AgentWorkflow):
    """The LLM call as a local activity: no activity task, so one workflow task fewer per step.

    The trade-off, measured by `bench/compare.py`: while a local activity runs, the workflow task
    stays open, so queries (the chat's progress line) and new messages wait until the model
    answers, and retry attempts no longer appear in the event history.
    """

    @workflow.init
    def __init__(self, input: AgentInput) -> None:
        super().__init__(input)

    @workflow.run
    async def run(self, input: AgentInput) -> AgentResult:
        return await super().run(input)

    async def _plan_next_action(self, window: list[Message], step: int = 1) -> Message | LLMFailure:
        # Today's planning call (same input, text streamed to watchers as in production, same
        # retry policy), as a local activity on the workflow's worker instead of an activity on
        # the LLM's queue: the only difference measured.
        self._set_status("thinking")
        config = self._config
        try:
            plan = await workflow.execute_local_activity(
                plan_next_action,
                self._events.plan_input(window, self._usage.total),
                start_to_close_timeout=timedelta(seconds=config.llm_timeout_seconds),
                retry_policy=config.llm_retry_policy(),
                summary=f"plan step {step}",
            )
        except ActivityError as err:
            return LLMFailure(
                f"Sorry, I could not get an answer from the language model: {failure_message(err)}."
            )
        self._status.model = plan.model
        if not plan.budget_exhausted:
            self._usage.count([*plan.failed_usage, plan.usage], self._turn_usage)
        return plan.message

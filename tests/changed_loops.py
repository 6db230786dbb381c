"""Changed versions of the agent loop, for the replay tests: the same change made three ways.

The change: screen every user message with a new activity before the loop plans, and refuse the
turn when the screen says no. Each version is a subclass of `AgentWorkflow` registered under the
same workflow name, which is what deploying the changed loop to running conversations amounts to.
`UnguardedScreening` makes the change naively and cannot replay a history recorded before it;
`PatchedScreening` guards it with `workflow.patched`, so old histories take the old path and new
turns the new one; `DeprecatedScreening` is the later clean-up with `workflow.deprecate_patch`,
for when no run that started before the patch is left. `docs/versioning.md` walks through
the same three steps.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from app.agent.models import AgentInput, AgentResult, Message
    from app.agent.workflow import AgentWorkflow
    from app.core.names import AGENT_WORKFLOW_NAME

PATCH_ID = "screen-messages"


class ScreenInput(BaseModel):
    """The user's message to screen."""

    text: str


class ScreenOutput(BaseModel):
    """Whether the loop may plan for it, and why not."""

    allowed: bool
    reason: str = ""


@activity.defn
async def screen_message(input: ScreenInput) -> ScreenOutput:
    """The new step: refuses messages that mention "forbidden"."""
    if "forbidden" in input.text.lower():
        return ScreenOutput(allowed=False, reason="it asks for something forbidden")
    return ScreenOutput(allowed=True)


class _Screening(AgentWorkflow):
    async def _screened_turn(self, text: str) -> str:
        verdict = await workflow.execute_activity(
            screen_message, ScreenInput(text=text), start_to_close_timeout=timedelta(seconds=10)
        )
        if verdict.allowed:
            return await AgentWorkflow._run_turn(self, text)
        answer = f"I can't help with that: {verdict.reason}."
        self._history += [Message.user(text), Message.assistant(answer)]
        return answer


@workflow.defn(name=AGENT_WORKFLOW_NAME)
class UnguardedScreening(_Screening):
    """The change made naively: replaying an old turn meets an activity it never scheduled."""

    # The SDK wants the run method on the workflow class itself; the loop is inherited.
    @workflow.run
    async def run(self, input: AgentInput) -> AgentResult:
        return await super().run(input)

    async def _run_turn(self, text: str) -> str:
        return await self._screened_turn(text)


@workflow.defn(name=AGENT_WORKFLOW_NAME)
class PatchedScreening(_Screening):
    """The change guarded by a patch: turns recorded before it replay down the old path."""

    # The SDK wants the run method on the workflow class itself; the loop is inherited.
    @workflow.run
    async def run(self, input: AgentInput) -> AgentResult:
        return await super().run(input)

    async def _run_turn(self, text: str) -> str:
        if workflow.patched(PATCH_ID):
            return await self._screened_turn(text)
        return await AgentWorkflow._run_turn(self, text)


@workflow.defn(name=AGENT_WORKFLOW_NAME)
class DeprecatedScreening(_Screening):
    """The clean-up, once every run that started before the patch has finished."""

    # The SDK wants the run method on the workflow class itself; the loop is inherited.
    @workflow.run
    async def run(self, input: AgentInput) -> AgentResult:
        return await super().run(input)

    async def _run_turn(self, text: str) -> str:
        workflow.deprecate_patch(PATCH_ID)
        return await self._screened_turn(text)

"""The IT team's Nexus handlers, and the workflows behind `jira_metrics` and `create_jira_issue`.

`get_ip` is a sync operation: it is quick local work, so the caller gets the answer in one round
trip with no workflow of ours in between. `jira_metrics` is workflow-backed: a real Jira is a slow
external system that fails now and then, so the IT team runs each call as a workflow in its own
namespace, whose activity Temporal retries on the IT side with the IT team's policy, at the cost
of some latency (a workflow start and an activity per call); the caller just awaits the result.
`create_jira_issue` is workflow-backed for the same reason, and because it writes: the handler
workflow's id comes from the caller's idempotency key (the `idempotency-key` header; the Nexus
request id when there is none), and its activity hands that id to the Jira client as the
idempotency key, so neither a retried start, a retried activity nor the same call sent again
creates a second issue.
Bad arguments fail at once with a non-retryable `InvalidToolArguments` error the LLM can read.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import nexusrpc
import nexusrpc.handler
from temporalio import nexus, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from app.core.errors import failure_message
    from app.core.tool_errors import InvalidToolArguments, non_retryable
    from app.it.activities import (
        JiraIssueRequest,
        create_jira_issue,
        fetch_jira_metrics,
        get_host_addresses,
        issue_fields,
        project_key,
    )
    from app.it.service import (
        IDEMPOTENCY_KEY_HEADER,
        CreateJiraIssueInput,
        CreateJiraIssueOutput,
        GetIpInput,
        GetIpOutput,
        ITService,
        JiraMetricsInput,
        JiraMetricsOutput,
    )

# The whole retry budget must end before the caller stops waiting (the agent gives a Nexus call
# 20 s), so that the caller hears "Jira failed" instead of "no answer": attempts of at most 5 s,
# retried after 0.5, 1, 2 and 4 s, all within 12 s; the workflow itself ends by 15 s. The rest
# of the 20 s is for Nexus and the workflow's own tasks (measured: 2 to 4 s on a loaded machine).
JIRA_CALL_TIMEOUT = timedelta(seconds=5)
JIRA_RETRY_BUDGET = timedelta(seconds=12)
JIRA_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=0.5),
    backoff_coefficient=2,
    maximum_attempts=5,
    # The activity already raises these as non-retryable; naming the type keeps that true even
    # if a future client raises a plain ApplicationError of this type.
    non_retryable_error_types=["InvalidToolArguments"],
)
JIRA_WORKFLOW_TIMEOUT = timedelta(seconds=15)


@workflow.defn
class JiraMetricsWorkflow:
    """Fetches one project's metrics, retrying a flaky Jira on the IT team's side."""

    @workflow.run
    async def run(self, input: JiraMetricsInput) -> JiraMetricsOutput:
        """The project's metrics, after as many attempts as the retry budget allows."""
        try:
            return await workflow.execute_activity(
                fetch_jira_metrics,
                input,
                start_to_close_timeout=JIRA_CALL_TIMEOUT,
                schedule_to_close_timeout=JIRA_RETRY_BUDGET,
                retry_policy=JIRA_RETRY_POLICY,
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and (
                cause.non_retryable or cause.type == "InvalidToolArguments"
            ):
                raise  # a bad key: the caller reads the activity's own error
            # Said as the IT team's answer, without the timeout in the cause chain: the caller
            # should not report "no answer" when the answer is "Jira is failing".
            raise ApplicationError(
                f"Jira is not answering: gave up after {JIRA_RETRY_BUDGET.total_seconds():g} s "
                f"of retries ({failure_message(err)})",
                type="JiraUnavailable",
                non_retryable=True,
            ) from None


@workflow.defn
class CreateJiraIssueWorkflow:
    """Creates one Jira issue, retrying a flaky Jira; its workflow id is the idempotency key."""

    @workflow.run
    async def run(self, input: CreateJiraIssueInput) -> CreateJiraIssueOutput:
        """The created issue; every attempt sends the same key, so Jira creates it once."""
        return await workflow.execute_activity(
            create_jira_issue,
            JiraIssueRequest(issue=input, idempotency_key=workflow.info().workflow_id),
            start_to_close_timeout=JIRA_CALL_TIMEOUT,
            retry_policy=JIRA_RETRY_POLICY,
        )


def creation_key(ctx: nexus.WorkflowRunOperationContext) -> str:
    """The caller's idempotency key (hashed: any text, a bounded id), else the request id."""
    headers = {name.lower(): value for name, value in ctx.headers.items()}
    key = headers.get(IDEMPOTENCY_KEY_HEADER)
    if not key:
        return ctx.request_id
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@nexusrpc.handler.service_handler(service=ITService)
class ITServiceHandler:
    """Serves ITService from the IT namespace."""

    @nexus.workflow_run_operation
    async def jira_metrics(
        self, ctx: nexus.WorkflowRunOperationContext, input: JiraMetricsInput
    ) -> nexus.WorkflowHandle[JiraMetricsOutput]:
        """Starts a JiraMetricsWorkflow; a malformed key is refused before any workflow starts."""
        try:
            key = project_key(input.project)
        except InvalidToolArguments as err:
            raise non_retryable(err) from None
        # The request id stays the same when Nexus retries the start, so a retry finds the
        # workflow the first attempt started instead of starting a second one.
        return await ctx.start_workflow(
            JiraMetricsWorkflow.run,
            JiraMetricsInput(project=key),
            id=f"jira-metrics-{key}-{ctx.request_id}",
            execution_timeout=JIRA_WORKFLOW_TIMEOUT,
        )

    @nexus.workflow_run_operation
    async def create_jira_issue(
        self, ctx: nexus.WorkflowRunOperationContext, input: CreateJiraIssueInput
    ) -> nexus.WorkflowHandle[CreateJiraIssueOutput]:
        """Starts a CreateJiraIssueWorkflow; bad fields are refused before any workflow starts."""
        try:
            issue = issue_fields(input)
        except InvalidToolArguments as err:
            raise non_retryable(err) from None
        # One key, one workflow id, one issue: see the module docstring.
        return await ctx.start_workflow(
            CreateJiraIssueWorkflow.run,
            issue,
            id=f"jira-create-{issue.project}-{creation_key(ctx)}",
            execution_timeout=JIRA_WORKFLOW_TIMEOUT,
        )

    @nexusrpc.handler.sync_operation
    async def get_ip(
        self, ctx: nexusrpc.handler.StartOperationContext, input: GetIpInput
    ) -> GetIpOutput:
        """This worker host's name and addresses."""
        # Resolving the hostname can block on a slow resolver: keep the worker's loop free.
        return await asyncio.to_thread(get_host_addresses)

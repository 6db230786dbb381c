"""The IT team's Nexus handlers, and the workflow behind the `jira_metrics` operation.

`get_ip` is a sync operation: it is quick local work, so the caller gets the answer in one round
trip with no workflow of ours in between. `jira_metrics` is workflow-backed: a real Jira is a slow
external system that fails now and then, so the IT team runs it as a workflow whose activity
Temporal retries on the IT side, at the cost of some latency; the caller just awaits the result.
Bad arguments fail at once with a non-retryable error that the caller can show the LLM.
"""

from __future__ import annotations

from datetime import timedelta

import nexusrpc
import nexusrpc.handler
from temporalio import nexus, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from app.it_activities import fetch_jira_metrics, host_addresses
    from app.it_service import (
        GetIpInput,
        GetIpOutput,
        ITService,
        JiraMetricsInput,
        JiraMetricsOutput,
    )


@workflow.defn
class JiraMetricsWorkflow:
    """Fetches one project's metrics, retrying a flaky Jira on the IT team's side."""

    @workflow.run
    async def run(self, input: JiraMetricsInput) -> JiraMetricsOutput:
        return await workflow.execute_activity(
            fetch_jira_metrics,
            input,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                maximum_attempts=5, non_retryable_error_types=["InvalidToolArguments"]
            ),
        )


@nexusrpc.handler.service_handler(service=ITService)
class ITServiceHandler:
    """Serves ITService from the IT namespace."""

    @nexus.workflow_run_operation
    async def jira_metrics(
        self, ctx: nexus.WorkflowRunOperationContext, input: JiraMetricsInput
    ) -> nexus.WorkflowHandle[JiraMetricsOutput]:
        # The request id is the same when the caller retries: starting twice is deduplicated.
        return await ctx.start_workflow(
            JiraMetricsWorkflow.run, input, id=f"jira-metrics-{ctx.request_id}"
        )

    @nexusrpc.handler.sync_operation
    async def get_ip(
        self, ctx: nexusrpc.handler.StartOperationContext, input: GetIpInput
    ) -> GetIpOutput:
        return host_addresses()

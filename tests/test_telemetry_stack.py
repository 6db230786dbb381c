"""Seeing inside the running stack: traces over OTLP and metrics scraped by a real Prometheus.

The three worker programs run as processes, each with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an
in-process OTLP/HTTP receiver and a `PROMETHEUS_BIND_ADDRESS` of its own, the way an operator
runs them. The chat client (`client.py`, piped) sends one message that calls `get_ip`: the
receiver must hold one trace with the Update, both planning calls, the Nexus operation and the
IT handler's work, across three processes and two namespaces, and no prompt text or key. Then
Debian's `prometheus` (skipped, saying why, where it is not installed) scrapes the three workers
while a few more turns run, and its HTTP API must return the turn count and the LLM latency
histogram.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment

from app.agent.models import AgentInput
from app.agent.tools.approvals import ToolDecision
from app.agent.workflow import AgentWorkflow
from app.core.names import DEPLOYMENTS, ORCHESTRATOR, Deployment
from app.core.processes import Child, free_port, is_polling
from app.core.setup import ensure_nexus_setup
from tests.conftest import start_dev_server
from tests.observability import (
    OTLPReceiver,
    Prometheus,
    ReceivedSpan,
    prometheus_binary,
    scrape_config,
)
from tests.stack_processes import program_env, run_program, wait_until

pytestmark = pytest.mark.slow

SECRET = "sk-telemetry-test-secret-0123456789"
# The operator's three queries, as the docs give them.
TURNS_PER_MINUTE = "sum(rate(agent_turns_total[5m])) * 60"
P95_TURN_SECONDS = (
    "histogram_quantile(0.95, sum by (le) (rate(agent_turn_duration_seconds_bucket[5m])))"
)
COST_PER_HOUR = "sum(rate(agent_llm_call_cost_usd_sum[15m])) * 3600"
QUESTION = "What is my IP address?"


@dataclass
class Stack:
    env: WorkflowEnvironment
    receiver: OTLPReceiver
    workers: dict[Deployment, Child]
    metrics: dict[Deployment, str]
    program_env: dict[str, str]

    @property
    def client(self) -> Client:
        return self.env.client


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """A dev server with the teams' namespaces, an OTLP receiver, and the three worker programs."""
    folder = tmp_path_factory.mktemp("telemetry")
    env = await start_dev_server()
    receiver = await OTLPReceiver.start()
    workers: dict[Deployment, Child] = {}
    try:
        await ensure_nexus_setup(env.client)
        common = program_env(
            TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            # Spans leave each process within 100 ms instead of 5 s.
            OTEL_BSP_SCHEDULE_DELAY="100",
            OPENAI_API_KEY=SECRET,
            OTEL_SERVICE_NAME=None,
        )
        metrics = {program: f"127.0.0.1:{free_port()}" for program in DEPLOYMENTS}
        for program in DEPLOYMENTS:
            worker_env = {**common, "PROMETHEUS_BIND_ADDRESS": metrics[program]}
            command = [sys.executable, program.program]
            log = folder / program.log_name
            workers[program] = await Child.start(program.name, command, log, worker_env)
        for program, child in workers.items():
            await wait_until_polling(env.client, program, child)
        yield Stack(env, receiver, workers, metrics, common)
    finally:
        for child in workers.values():
            await child.stop()
        await receiver.stop()
        await env.shutdown()
        await asyncio.sleep(0.5)


async def wait_until_polling(client: Client, program: Deployment, child: Child) -> None:
    async def polling() -> bool:
        return await is_polling(client, program, child.pid)

    for _ in range(1200):
        if child.exit_code is not None:
            break
        if await polling():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the {program.name} is not polling:\n{child.log_tail(30)}")


def tree(spans: list[ReceivedSpan], trace_id: str) -> dict[str, list[ReceivedSpan]]:
    """The trace's spans by name."""
    named: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        if span.trace_id == trace_id:
            named.setdefault(span.name, []).append(span)
    return named


async def test_one_turn_calling_get_ip_is_one_trace_across_three_processes(stack: Stack):
    chat_env = {**stack.program_env}
    finished = await run_program(["client.py"], stdin=QUESTION + "\n", env=chat_env, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "Your IP address is" in finished.stdout, finished.stdout

    def complete() -> bool:
        names = {span.name for span in stack.receiver.spans}
        return {
            "HandleUpdate:send_message",
            "RunStartNexusOperationHandler:ITService/get_ip",
        } <= names and sum(span.name.startswith("chat ") for span in stack.receiver.spans) >= 2

    await wait_until(complete, 30, "the turn's spans at the receiver")
    roots = [s for s in stack.receiver.spans if s.name == "StartWorkflowUpdate:send_message"]
    assert len(roots) == 1, roots
    root = roots[0]
    assert root.service == "durable-agent-client" and root.parent_id == ""
    spans = tree(stack.receiver.spans, root.trace_id)
    by_id = {span.span_id: span for spans_ in spans.values() for span in spans_}

    (update,) = spans["HandleUpdate:send_message"]
    assert update.parent_id == root.span_id and update.service == "orchestrator-worker"
    assert len(spans["RunActivity:plan_next_action"]) == 2
    llm_calls = spans["chat offline/agent"]
    assert len(llm_calls) == 2
    for call in llm_calls:
        assert by_id[call.parent_id].name == "RunActivity:plan_next_action"
        attributes = call.attributes
        assert attributes["gen_ai.request.model"] == "offline/agent"
        assert attributes["gen_ai.provider.name"] == "offline"
        assert attributes["gen_ai.response.model"] == "offline/agent"
        assert attributes["gen_ai.usage.input_tokens"] > 0
        assert attributes["gen_ai.usage.output_tokens"] > 0
        assert attributes["gen_ai.usage.cost_usd"] == 0.0
        assert attributes["temporal.attempt"] == 1
    reasons = sorted(call.attributes["gen_ai.response.finish_reasons"][0] for call in llm_calls)
    assert reasons == ["stop", "tool_calls"]
    (operation,) = spans["StartNexusOperation:ITService/get_ip"]
    (handler,) = spans["RunStartNexusOperationHandler:ITService/get_ip"]
    assert handler.parent_id == operation.span_id and handler.service == "it-nexus-worker"
    # Every span of the trace hangs from the chat's span: one tree, nothing orphaned.
    for span in by_id.values():
        ancestor = span
        while ancestor.parent_id:
            ancestor = by_id[ancestor.parent_id]
        assert ancestor is root, span
    # No prompt, answer or key left any process.
    for body in stack.receiver.bodies:
        assert SECRET.encode() not in body
        assert QUESTION.encode() not in body
        assert b"Your IP address is" not in body
    # The turn's log line names the same trace.
    log = stack.workers[ORCHESTRATOR].log.read_text()
    lines = [line for line in log.splitlines() if "Turn answered:" in line]
    assert len(lines) == 1, log
    assert f"trace_id={root.trace_id}" in lines[0] and "tools=get_ip" in lines[0], lines[0]
    assert "steps=2" in lines[0], lines[0]


async def test_a_real_prometheus_scrapes_the_three_workers(stack: Stack, tmp_path: Path):
    binary = prometheus_binary()
    if binary is None:
        reason = "`prometheus` is not installed (Debian: apt-get install prometheus)"
        # A skip's reason shows only with -rs; a warning is printed in every run's summary.
        warnings.warn(f"the Prometheus scrape test is skipped: {reason}", stacklevel=1)
        pytest.skip(reason)
    targets = {
        program.log_name.removesuffix(".log"): stack.metrics[program] for program in DEPLOYMENTS
    }
    prometheus = await Prometheus.start(binary, scrape_config(targets, 0.5), tmp_path)
    try:

        async def value(promql: str) -> float:
            result = await prometheus.query(promql)
            return float(result[0]["value"][1]) if result else -1.0

        async def scraped(promql: str, at_least: float) -> float:
            for _ in range(200):
                if (found := await value(promql)) >= at_least:
                    return found
                await asyncio.sleep(0.25)
            raise AssertionError(f"{promql} stayed below {at_least}: {await value(promql)}")

        # Scraping already: the three workers are up, and what they counted before this test
        # (the chat's turn of the other test, when it ran first) is known.
        for job in targets:
            assert await scraped(f'up{{job="{job}"}}', 1) == 1
        turns_before = max(0.0, await value("sum(agent_turns_total)"))
        calls_before = max(0.0, await value("sum(agent_llm_call_duration_seconds_count)"))
        handle = await stack.client.start_workflow(
            AgentWorkflow.run,
            AgentInput(),
            id=f"telemetry-{uuid.uuid4()}",
            task_queue=ORCHESTRATOR.task_queue,
        )
        await handle.execute_update(AgentWorkflow.send_message, "Calculate 15 * 23")
        # Prometheus has the series before the next turns: rate() sees them as increases.
        await scraped('sum(agent_tool_calls_total{tool="calculator"})', 1)
        await scraped("sum(agent_turn_duration_seconds_count)", 1)
        for text in ("What is my IP address?", "Echo hello"):
            await handle.execute_update(AgentWorkflow.send_message, text)
        # One approval asked and denied.
        asked = await handle.start_update(
            AgentWorkflow.send_message,
            "Create a Jira issue in PROJ: the printer is on fire",
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )

        async def pending() -> list:
            return (await handle.query(AgentWorkflow.get_pending_approvals)).calls

        for _ in range(300):
            if calls := await pending():
                break
            await asyncio.sleep(0.1)
        await handle.execute_update(
            AgentWorkflow.decide_tool_call,
            ToolDecision(
                call_id=calls[0].call_id,
                approve=False,
                note="not now",
                approval_id=calls[0].approval_id,
                digest=calls[0].digest,
            ),
        )
        await asyncio.wait_for(asked.result(), 60)

        # Every turn scraped, the approval's included: two LLM calls each.
        assert await scraped("sum(agent_turns_total)", turns_before + 4) == turns_before + 4
        await scraped("sum(agent_llm_call_duration_seconds_count)", calls_before + 8)
        # The SDK's own metrics from every worker, seconds as the unit.
        assert await scraped("count(temporal_request_total) by (job)", 1) >= 1
        # The LLM latency histogram, per model and outcome.
        buckets = await prometheus.query(
            'agent_llm_call_duration_seconds_bucket{model="offline/agent",outcome="ok",le="+Inf"}'
        )
        assert buckets and float(buckets[0]["value"][1]) == calls_before + 8, buckets
        p95 = await value(
            "histogram_quantile(0.95, sum by (le) (agent_llm_call_duration_seconds_bucket))"
        )
        assert 0 < p95 <= 300
        tools = await prometheus.query("agent_tool_calls_total")
        by_tool = {
            (r["metric"]["tool"], r["metric"]["outcome"]): float(r["value"][1]) for r in tools
        }
        assert by_tool[("calculator", "ok")] == 1 and by_tool[("get_ip", "ok")] >= 1, by_tool
        assert by_tool[("echo", "ok")] == 1 and by_tool[("create_jira_issue", "not_run")] == 1
        assert await value("sum(agent_approval_requests_total)") == 1
        assert await value('sum(agent_approval_decisions_total{decision="denied"})') == 1
        assert await value('sum(agent_llm_tokens_total{type="input"})') > 0
        assert await value("sum(agent_llm_call_cost_usd_count)") >= 8
        # The docs' queries answer (the offline model is free: $0 an hour).
        assert await scraped(TURNS_PER_MINUTE, 0.001) > 0
        assert 0 < await scraped(P95_TURN_SECONDS, 1e-9) <= 300
        assert await value(COST_PER_HOUR) == 0.0
    finally:
        await prometheus.stop()

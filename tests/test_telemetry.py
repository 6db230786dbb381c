"""Traces survive replay without duplicates; the turn's log line; approval metrics; settings.

A worker that caches no workflow replays the whole history before each workflow task, the worst
case for duplicate spans: a turn run on it must export each span once, the same spans as a
caching worker. Replaying the turn's history, and every golden history, with the tracing plugin
must export nothing. Spans go to an in-memory exporter through the replay-safe provider that
`start_tracing` installs, the same path as the OTLP exporter minus the wire (the wire is tested in
`test_telemetry_stack.py`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections import Counter
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.contrib.opentelemetry import (
    OpenTelemetryPlugin,
    ReplaySafeTracerProvider,
    create_tracer_provider,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Replayer

from app.agent import metrics
from app.agent.llm.activity import with_failed_usage
from app.agent.llm.telemetry import llm_call_telemetry
from app.agent.llm.usage import LLMUsage
from app.agent.models import AgentConfig, AgentInput
from app.agent.tools.catalog import TOOLS, Tool
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.core.telemetry import (
    JsonFormatter,
    TelemetrySettingError,
    current_trace_id,
    metrics_runtime,
    tracing_configured,
)
from tests.doubles import (
    AgentHarness,
    ScriptedLLM,
    call,
    decision_for,
    pending_calls,
    tools_then_answer,
)
from tests.test_golden_histories import agent_histories, load

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The process's tracer provider, replay-safe, exporting to memory (set once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, ReplaySafeTracerProvider):
        provider = create_tracer_provider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        pytest.skip("another tracer provider was installed in this process first")
    return EXPORTER


async def traced_client(env: WorkflowEnvironment) -> Client:
    return await Client.connect(
        env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        data_converter=pydantic_data_converter,
        plugins=[OpenTelemetryPlugin(add_temporal_spans=True)],
    )


async def one_traced_turn(client: Client, **worker_options: Any) -> str:
    """Run one calculator turn in a new conversation; return its workflow id."""
    task_queue = f"telemetry-{uuid.uuid4()}"
    async with orchestrator_worker(client, task_queue=task_queue, **worker_options):
        handle = await client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=f"traced-{uuid.uuid4()}", task_queue=task_queue
        )
        answer = await handle.execute_update(AgentWorkflow.send_message, "Calculate 15 * 23")
        assert "345" in answer
        await handle.signal(AgentWorkflow.end_conversation)
        await handle.result()
    return handle.id


def turn_spans(exporter: InMemorySpanExporter, workflow_id: str) -> Counter[str]:
    """The names of the spans of the Update's trace, counted."""
    spans = exporter.get_finished_spans()
    updates = [
        s
        for s in spans
        if s.name == "StartWorkflowUpdate:send_message"
        and (s.attributes or {}).get("temporalWorkflowID") == workflow_id
    ]
    assert len(updates) == 1, [s.name for s in spans]
    trace_id = updates[0].context.trace_id
    ids = [s.context.span_id for s in spans if s.context.trace_id == trace_id]
    assert len(ids) == len(set(ids)), "a span was exported twice"
    return Counter(s.name for s in spans if s.context.trace_id == trace_id)


EXPECTED = {
    "StartWorkflowUpdate:send_message": 1,
    "HandleUpdate:send_message": 1,
    "StartActivity:plan_next_action": 2,
    "RunActivity:plan_next_action": 2,
    "chat offline/agent": 2,
    "StartActivity:execute_tool": 1,
    "RunActivity:execute_tool": 1,
}


async def test_a_worker_that_replays_every_task_exports_each_span_once(
    dev_env: WorkflowEnvironment,
    exporter: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    client = await traced_client(dev_env)
    cached_id = await one_traced_turn(client)
    caplog.set_level(logging.INFO, logger="temporalio.workflow")
    # The end of a turn runs again at each later workflow task of a worker without a cache.
    ends_of_turns: list[str | None] = []

    def counted_trace_id() -> str | None:
        ends_of_turns.append(current_trace_id())
        return ends_of_turns[-1]

    monkeypatch.setattr(metrics, "current_trace_id", counted_trace_id)
    replaying_id = await one_traced_turn(client, max_cached_workflows=0)
    assert len(ends_of_turns) > 1, "the worker did not replay the turn"
    assert len(set(ends_of_turns)) == 1, "a replay saw another trace"

    cached = turn_spans(exporter, cached_id)
    replaying = turn_spans(exporter, replaying_id)
    assert {name: cached[name] for name in EXPECTED} == EXPECTED, cached
    assert replaying == cached

    # One log line for the turn, though its workflow code ran again at every task.
    lines = [r for r in caplog.records if r.getMessage().startswith("Turn answered:")]
    lines = [r for r in lines if getattr(r, "conversation_id", None) == replaying_id]
    assert len(lines) == 1
    record = lines[0]
    update = next(
        s
        for s in exporter.get_finished_spans()
        if s.name == "HandleUpdate:send_message"
        and (s.attributes or {}).get("temporalWorkflowID") == replaying_id
    )
    fields = json.loads(JsonFormatter().format(record))
    assert fields["trace_id"] == format(update.context.trace_id, "032x")
    assert (fields["turn"], fields["steps"], fields["tools"]) == (1, 2, "calculator")
    assert fields["tokens"] > 0 and fields["cost_usd"] == 0.0 and fields["seconds"] >= 0
    assert f"trace_id={fields['trace_id']}" in fields["message"]


async def test_replaying_with_the_tracing_plugin_exports_no_span(
    dev_env: WorkflowEnvironment, exporter: InMemorySpanExporter
):
    client = await traced_client(dev_env)
    workflow_id = await one_traced_turn(client)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    replayer = Replayer(
        workflows=[AgentWorkflow],
        data_converter=pydantic_data_converter,
        plugins=[OpenTelemetryPlugin(add_temporal_spans=True)],
    )
    exporter.clear()
    await replayer.replay_workflow(history)
    for path in agent_histories():
        await replayer.replay_workflow(load(path))
    assert exporter.get_finished_spans() == ()


def test_traces_are_exported_only_when_an_endpoint_is_set():
    assert not tracing_configured({})
    assert tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not tracing_configured(endpoint | {"OTEL_SDK_DISABLED": "true"})
    assert not tracing_configured(endpoint | {"OTEL_TRACES_EXPORTER": "none"})


def test_a_bad_metrics_address_is_refused_with_the_variable_named():
    assert metrics_runtime({}) is None
    with pytest.raises(TelemetrySettingError, match=r"PROMETHEUS_BIND_ADDRESS='nonsense' cannot"):
        metrics_runtime({"PROMETHEUS_BIND_ADDRESS": "nonsense"})


async def test_approvals_are_counted_by_how_they_ended(
    time_skipping_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    # `create_jira_issue` keeps its catalog entry (it needs approval) but runs as a stand-in.
    real = TOOLS["create_jira_issue"]
    stand_in = Tool(
        real.name, real.input_model, function=lambda _: "PROJ-1", requires_approval=True
    )
    monkeypatch.setitem(TOOLS, "create_jira_issue", stand_in)
    buffer = MetricBuffer(10_000)
    client = await Client.connect(
        time_skipping_env.client.service_client.config.target_host,
        namespace=time_skipping_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=Runtime(telemetry=TelemetryConfig(metrics=buffer)),
    )
    issue: dict[str, object] = {"project": "PROJ", "summary": "The printer is on fire"}
    llm = ScriptedLLM(tools_then_answer(call("create_jira_issue", issue, "c1")))
    harness = AgentHarness(time_skipping_env, llm, AgentConfig(approval_timeout_seconds=90))
    harness.client = client  # the worker records into `buffer`
    async with harness.worker():
        handle = await harness.start()
        for approve in (True, False, None):  # None: nobody decides
            if approve is None:
                # A conversation of its own whose wait ends after one real second: no time
                # skipping, whose lock another test's client may hold.
                harness.config = AgentConfig(approval_timeout_seconds=1)
                handle = await harness.start()
            turn = await handle.start_update(
                AgentWorkflow.send_message,
                "Create a Jira issue",
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
            await pending_calls(handle)
            if approve is not None:
                decision = await decision_for(handle, "c1", approve)
                await handle.execute_update(AgentWorkflow.decide_tool_call, decision)
            await turn.result()
    counted: Counter[tuple[str, ...]] = Counter()
    for update in buffer.retrieve_updates():
        labels = update.attributes
        if update.metric.name == "agent_approval_requests":
            counted["asked", str(labels["tool"])] += int(update.value)
        elif update.metric.name == "agent_approval_decisions":
            counted[str(labels["decision"]), str(labels["tool"])] += int(update.value)
        elif update.metric.name == "agent_tool_calls":
            counted["tool", str(labels["outcome"])] += int(update.value)
    assert counted == {
        ("asked", "create_jira_issue"): 3,
        ("approved", "create_jira_issue"): 1,
        ("denied", "create_jira_issue"): 1,
        ("timed_out", "create_jira_issue"): 1,
        ("tool", "ok"): 1,
        ("tool", "not_run"): 2,
    }


def test_a_failed_attempt_that_reached_the_provider_counts_its_tokens_and_price():
    buffer = MetricBuffer(1_000)
    env = ActivityEnvironment()
    env.metric_meter = Runtime(telemetry=TelemetryConfig(metrics=buffer)).metric_meter
    # The second attempt: the first one's usage rides in the heartbeat details it starts with.
    first = LLMUsage(prompt_tokens=50, cost_usd=0.5, model="openai/gpt-4o-mini")
    env.info = dataclasses.replace(
        env.info,
        attempt=2,
        task_queue=f"telemetry-{uuid.uuid4()}",
        heartbeat_details=[[first.model_dump()]],
    )
    this = LLMUsage(prompt_tokens=100, completion_tokens=7, cost_usd=0.002, model="openai/gpt-4o")

    def attempt() -> None:
        with llm_call_telemetry("openai/gpt-4o-mini"):
            empty = ApplicationError("empty", type="LLMEmptyAnswer", non_retryable=True)
            raise with_failed_usage(empty, this)

    with pytest.raises(ApplicationError):
        env.run(attempt)
    counted = {
        (
            u.metric.name,
            u.attributes["model"],
            u.attributes.get("outcome", u.attributes.get("type")),
        ): u.value
        for u in buffer.retrieve_updates()
        if u.metric.name != "agent_llm_call_duration"
    }
    # The model that answered, this attempt's counts only (the first was counted when it failed).
    assert counted == {
        ("agent_llm_calls", "openai/gpt-4o", "LLMEmptyAnswer"): 1,
        ("agent_llm_tokens", "openai/gpt-4o", "input"): 100,
        ("agent_llm_tokens", "openai/gpt-4o", "output"): 7,
        ("agent_llm_call_cost", "openai/gpt-4o", None): 0.002,
    }

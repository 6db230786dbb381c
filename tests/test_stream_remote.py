"""The stream events of a turn whose tools run in parallel behind Nexus endpoints (dev server).

The real orchestrator, IT and Finance workers and the offline model: "the stock price of AAPL and
my IP address" runs `stock_price` and `get_ip` at once, each through its team's endpoint, and the
answer's text arrives on the stream as it is written.
"""

from __future__ import annotations

import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

from app.agent.models import AgentInput
from app.agent.stream.events import TextDelta, ToolCallFinished, TurnAnswered
from app.agent.workflow import AgentWorkflow
from app.core.setup import ensure_nexus_setup
from tests.doubles import watching
from tests.test_nexus import RecordNamespaces, handler_workers, orchestrator
from tests.test_stream_events import read_events, summary


async def test_a_parallel_remote_turn_publishes_both_calls_and_streams_the_answer(
    dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
):
    # The first batch leaves one interval after the call starts: shorter than the answer takes.
    monkeypatch.setenv("LLM_STREAM_BATCH_MS", "20")
    monkeypatch.setenv("OFFLINE_MODEL_LATENCY_MS", "400")
    await ensure_nexus_setup(dev_env.client)
    client = dev_env.client
    async with handler_workers(dev_env, RecordNamespaces()), orchestrator(client) as task_queue:
        handle = await client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=f"remote-{uuid.uuid4()}", task_queue=task_queue
        )
        async with watching(client, handle):
            answer = await handle.execute_update(
                AgentWorkflow.send_message,
                "What is the stock price of AAPL and what is my IP address?",
                id="turn-p",
            )
        events = [event for _, event in await read_events(client, handle.id)]
    shown = summary(events)
    assert shown[:4] == [
        ("started", 1),
        ("step", 1),
        ("tool", "stock_price", '{"ticker": "AAPL"}', "finance-nexus-endpoint"),
        ("tool", "get_ip", "{}", "it-nexus-endpoint"),
    ]
    # Both calls started before either finished: they ran at once, in either order.
    finished = [e for e in events if isinstance(e, ToolCallFinished)]
    assert sorted((e.tool, e.ok) for e in finished) == [("get_ip", True), ("stock_price", True)]
    assert all(isinstance(e, ToolCallFinished) for e in events[4:6])
    assert shown[6] == ("step", 2)
    # The text streamed while the answer was written; what was left when it was ready comes
    # whole in the answer event.
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text and answer.startswith(text)
    assert answer.startswith("AAPL is at $") and "Your IP address is" in answer
    assert isinstance(events[-1], TurnAnswered) and events[-1].answer == answer

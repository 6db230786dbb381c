"""Time to first text: how long a chat client waits before the answer's words start to appear.

`uv run python bench/first_text.py` starts its own dev server and the three worker programs (as
`bench/run.py` does) with the offline model spreading each answer over `--latency-ms` (default
3000, as in the README's live demo), then sends `--turns` plain messages one after another,
subscribed to the conversation's Workflow Stream as the chat client is. For each turn it takes
the time from sending the Update to the first `TextDelta` event and to the answer, with token
streaming on and then off (`LLM_STREAM_TEXT=0`: the answer's text then first appears with the
answer). It also prints the history each turn added, to show what streaming costs in events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient

from app.agent.models import AgentInput
from app.agent.stream.events import EVENT_TYPE, EVENTS_TOPIC, TextDelta, TurnAnswered
from app.agent.workflow import AgentWorkflow
from app.core.exiting import exit_now
from app.core.names import ORCHESTRATOR, PROJECT_ROOT
from bench.stack import running_stack

MESSAGE = "Hello"


async def one_turn(client: Client, conversation: str, offset: int) -> tuple[float, float, int]:
    """Seconds to the first text and to the answer, and the stream offset after the answer."""
    stream = WorkflowStreamClient.create(client, conversation)
    handle = client.get_workflow_handle_for(AgentWorkflow.run, conversation)
    first_text: float | None = None
    sent = time.monotonic()
    update = asyncio.ensure_future(handle.execute_update(AgentWorkflow.send_message, MESSAGE))
    async for item in stream.subscribe(
        [EVENTS_TOPIC], offset, result_type=EVENT_TYPE, poll_cooldown=timedelta(milliseconds=50)
    ):
        offset = item.offset + 1
        if isinstance(item.data, TextDelta) and first_text is None:
            first_text = time.monotonic() - sent
        if isinstance(item.data, TurnAnswered):
            break
    await update
    answered = time.monotonic() - sent
    return (first_text if first_text is not None else answered), answered, offset


async def history_per_turn(client: Client, conversation: str, turns: int) -> tuple[float, float]:
    """Events and workflow tasks per turn in the conversation's history (start excluded)."""
    handle = client.get_workflow_handle(conversation)
    events = [event async for event in handle.fetch_history_events()]
    tasks = sum(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED for e in events)
    return (len(events) - 3) / turns, (tasks - 1) / turns  # the start: 3 events, 1 task


async def measure(stream_text: bool, turns: int, latency_ms: float, log_dir: Path) -> None:
    os.environ["LLM_STREAM_TEXT"] = "1" if stream_text else "0"
    async with running_stack(
        "first-text",
        low_latency=True,
        orchestrator_argv=[str(PROJECT_ROOT / "orchestrator_worker.py")],
        model_latency_ms=latency_ms,
        log_dir=log_dir,
    ) as stack:
        conversation = f"first-text-{uuid.uuid4().hex[:8]}"
        await stack.client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=conversation, task_queue=ORCHESTRATOR.task_queue
        )
        offset = 0
        firsts, answers = [], []
        for _ in range(turns):
            first, answered, offset = await one_turn(stack.client, conversation, offset)
            firsts.append(first)
            answers.append(answered)
        events, tasks = await history_per_turn(stack.client, conversation, turns)
    label = "on " if stream_text else "off"
    print(
        f"token streaming {label}: first text after {statistics.median(firsts):.2f} s "
        f"(min {min(firsts):.2f}, max {max(firsts):.2f}), answer after "
        f"{statistics.median(answers):.2f} s; per turn {events:.1f} history events, "
        f"{tasks:.1f} workflow tasks ({turns} turns, medians)"
    )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=3000.0)
    args = parser.parse_args(argv)
    os.environ.update(LLM_MODEL="offline/agent", LITELLM_LOCAL_MODEL_COST_MAP="True")
    with tempfile.TemporaryDirectory(prefix="bench-first-text-") as logs:
        for stream_text in (True, False):
            await measure(stream_text, args.turns, args.latency_ms, Path(logs))


if __name__ == "__main__":
    asyncio.run(main())
    exit_now(0)  # flushed, and no interpreter teardown while the SDK's threads run

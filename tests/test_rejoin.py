"""A client restarted mid-turn rejoins the turn: `client.py --conversation-id` while a turn runs.

The orchestrator worker runs in this process with the offline model, slowed down so that a turn
lasts seconds; `client.py` runs as people run it. The first client sends a message and is killed
(SIGKILL, as a closed laptop or a crash would end it) while the turn runs; a second one attaches
to the conversation, says that a turn is in progress, shows its text from the turn's start
(once, not doubled), prints the answer, and then prompts. Piped, it prints the answer line only.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator

import pexpect
import pyte
import pytest
from temporalio.client import Client
from temporalio.contrib.workflow_streams import WorkflowStreamClient
from temporalio.testing import WorkflowEnvironment

from app.agent.llm.client import litellm_module
from app.agent.llm.offline_model import CAPABILITIES
from app.agent.stream.events import EVENT_TYPE, EVENTS_TOPIC, TurnStarted
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.core.names import PROJECT_ROOT
from tests.stack_processes import ANSI_ESCAPE, Running, program_env, run_program

ANSWER = f"Hello! {CAPABILITIES}"


@pytest.fixture(scope="module")
async def served(dev_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    await asyncio.to_thread(litellm_module)
    async with orchestrator_worker(dev_env.client):
        yield dev_env.client


@pytest.fixture
def slow_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # The in-process worker's offline model spreads each answer over twelve seconds: time enough
    # to kill a client and start another in the middle of the turn (two seconds on a quiet
    # machine; eight were seen on a loaded one).
    monkeypatch.setenv("OFFLINE_MODEL_LATENCY_MS", "12000")


def client_env(client: Client, **overrides: str) -> dict[str, str]:
    return program_env(TEMPORAL_ADDRESS=client.service_client.config.target_host, **overrides)


async def turn_in_progress(client: Client, conversation: str) -> tuple[str, int] | None:
    handle = client.get_workflow_handle(conversation)
    status = await handle.query(AgentWorkflow.get_status)
    if status.turn_id is None or status.turn_offset is None:
        return None
    return status.turn_id, status.turn_offset


async def start_a_turn_and_kill_the_client(client: Client) -> str:
    """Send "Hello" from a piped client, kill it once the turn runs; the conversation's id."""
    first = await Running.start(["client.py"], env=client_env(client))
    try:
        await first.wait_for_output("Conversation: ")
        conversation = first.stdout.split("Conversation: ")[1].split()[0]
        first.send("Hello\n")
        holder: list[tuple[str, int] | None] = [None]

        async def poll() -> None:
            while holder[0] is None:
                holder[0] = await turn_in_progress(client, conversation)
                await asyncio.sleep(0.05)

        await asyncio.wait_for(poll(), 30)
    finally:
        first.kill()
    await first.wait()
    return conversation


async def test_the_status_names_the_turn_in_progress_and_where_its_events_start(
    served: Client, slow_model: None
):
    conversation = await start_a_turn_and_kill_the_client(served)
    in_progress = await turn_in_progress(served, conversation)
    assert in_progress is not None
    turn_id, offset = in_progress
    assert turn_id.startswith("message-")
    # The offset is the turn's own TurnStarted event: its first event, nothing before it.
    stream = WorkflowStreamClient.create(served, conversation)
    async for item in stream.subscribe([EVENTS_TOPIC], offset, result_type=EVENT_TYPE):
        assert item.offset == offset
        assert isinstance(item.data, TurnStarted)
        assert item.data.turn_id == turn_id
        break
    handle = served.get_workflow_handle(conversation)
    answer = await handle.get_update_handle_for(AgentWorkflow.send_message, turn_id).result()
    assert answer == ANSWER
    assert await turn_in_progress(served, conversation) is None
    await handle.signal(AgentWorkflow.end_conversation)


@pytest.mark.timeout(150)
async def test_a_piped_client_restarted_mid_turn_prints_the_answer_line_once(
    served: Client, slow_model: None
):
    conversation = await start_a_turn_and_kill_the_client(served)
    second = await run_program(
        ["client.py", "--conversation-id", conversation],
        stdin="quit\n",
        env=client_env(served),
        timeout=60,
    )
    assert second.returncode == 0, second.stderr
    assert second.stderr == ""
    assert ANSI_ESCAPE not in second.stdout
    lines = second.stdout.splitlines()
    assert lines[0] == f"Conversation: {conversation} (resumed)"
    # Between the banner and the goodbye: the answer line, and nothing else.
    assert lines[3:-1] == [f"Agent: {ANSWER}"]
    assert lines[-1].startswith(f"Conversation {conversation} stays open: resume it with")
    handle = served.get_workflow_handle(conversation)
    view = await handle.query(AgentWorkflow.get_history)
    assert [(m.role, m.content) for m in view.messages] == [
        ("user", "Hello"),
        ("assistant", ANSWER),
    ]
    await handle.signal(AgentWorkflow.end_conversation)


@pytest.mark.timeout(150)
async def test_a_terminal_client_restarted_mid_turn_shows_the_turn_from_its_start_once(
    served: Client, slow_model: None
):
    conversation = await start_a_turn_and_kill_the_client(served)
    handle = served.get_workflow_handle(conversation)
    env = client_env(served, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1")
    child = pexpect.spawn(
        sys.executable,
        ["client.py", "--conversation-id", conversation],
        cwd=str(PROJECT_ROOT),
        env=env,
        timeout=30,
        dimensions=(40, 200),
    )
    # What a person sees: the client's output drawn on an emulated terminal of the same size.
    screen = pyte.Screen(200, 40)
    stream = pyte.ByteStream(screen)

    async def expect(pattern: str | type[pexpect.EOF]) -> str:
        """Wait for `pattern`, then the screen as a person reads it (on one line)."""
        await asyncio.to_thread(child.expect, pattern)
        stream.feed(child.before + (child.after if isinstance(child.after, bytes) else b""))
        return " ".join(" ".join(screen.display).split())

    try:
        await expect("A turn is in progress")
        # The answer's first words are on screen while the turn is still running, once.
        mid_turn = await expect("I'm the offline model")
        view = await handle.query(AgentWorkflow.get_history)
        assert [m.role for m in view.messages] == ["user"]
        assert mid_turn.count("Hello!") == 1, screen.display
        await expect("real LLM")
        shown = await expect("You:")
        child.sendcontrol("d")
        await expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert (
        "A turn is in progress; from its start: You: Hello Agent: Hello! I'm the offline" in shown
    )
    # The finished answer, whole and once; then the turn's usage line and the prompt.
    assert shown.count("Hello!") == 1, screen.display
    assert shown.count("Set LLM_MODEL and a provider key for a real LLM.") == 1, screen.display
    assert re.search(r"a real LLM\. .* s You:$", shown), screen.display
    view = await handle.query(AgentWorkflow.get_history)
    assert [m.content for m in view.messages if m.role == "assistant"] == [ANSWER]
    await handle.signal(AgentWorkflow.end_conversation)

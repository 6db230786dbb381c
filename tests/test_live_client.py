"""The chat client with the live view: on a pseudo-terminal (pexpect), and piped as before.

The orchestrator worker runs in this process with the offline model, slowed down so that a turn
lasts seconds; `client.py` runs as people run it. On a terminal the answer's words appear while
the turn is still running and the Up arrow recalls the last message; piped, the transcript is
byte for byte the one recorded from the client before the live view existed
(`tests/transcripts/piped_chat.txt`).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pexpect
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from app.agent.llm.client import litellm_module
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.cli.chat.live import clean
from app.cli.demo.main import demo_command
from app.core.names import PROJECT_ROOT
from tests.stack_processes import program_env, run_program

TRANSCRIPT = Path(__file__).parent / "transcripts" / "piped_chat.txt"
PIPED_INPUT = "Calculate 15 * 23\nEcho hello\nWhat is 2 plus 3 times 4?\n/history\nquit\n"


@pytest.fixture(scope="module")
async def served(dev_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    await asyncio.to_thread(litellm_module)
    async with orchestrator_worker(dev_env.client):
        yield dev_env.client


def address(client: Client) -> str:
    return client.service_client.config.target_host


async def test_piped_output_is_byte_for_byte_what_it_was(served: Client):
    result = await run_program(
        ["client.py"],
        stdin=PIPED_INPUT,
        env=program_env(TEMPORAL_ADDRESS=address(served)),
        timeout=60,
    )
    conversation = re.search(r"conversation-[0-9a-f]{8}", result.stdout)
    assert conversation is not None, result.stdout + result.stderr
    ui_port = re.search(r"localhost:(\d+)", result.stdout)
    assert ui_port is not None
    expected = (
        TRANSCRIPT.read_text()
        .replace("{conversation}", conversation[0])
        .replace("{ui_port}", ui_port[1])
    )
    assert result.stdout == expected
    assert result.stderr == ""


def spawn_client(served: Client, state: Path, *args: str) -> pexpect.spawn:
    """`client.py` on a pexpect terminal of 40 x 120, its input history kept in `state`."""
    env = program_env(
        TEMPORAL_ADDRESS=address(served),
        TERM="xterm",
        # pexpect's terminal does not answer prompt_toolkit's cursor position requests.
        PROMPT_TOOLKIT_NO_CPR="1",
        XDG_STATE_HOME=str(state),
    )
    return pexpect.spawn(
        sys.executable,
        ["client.py", *args],
        cwd=str(PROJECT_ROOT),
        env=env,
        timeout=30,
        dimensions=(40, 120),
    )


@pytest.mark.timeout(180)
async def test_a_terminal_shows_the_answer_as_it_is_written_and_up_recalls_the_last_message(
    served: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    # The in-process worker's offline model spreads each answer over three seconds.
    monkeypatch.setenv("OFFLINE_MODEL_LATENCY_MS", "3000")
    child = spawn_client(served, tmp_path)
    try:
        await asyncio.to_thread(child.expect, r"Conversation: (conversation-[0-9a-f]{8})")
        conversation = child.match.group(1).decode()
        handle = served.get_workflow_handle(conversation)
        await asyncio.to_thread(child.expect, "You:")
        sent = time.monotonic()
        child.send("Hello\r")
        await asyncio.to_thread(child.expect, "Hello!")
        first_text = time.monotonic() - sent
        # The first words are on screen while the turn is still running.
        view = await handle.query(AgentWorkflow.get_history)
        assert [m.role for m in view.messages] == ["user"]
        await asyncio.to_thread(child.expect, "real LLM")
        await asyncio.to_thread(child.expect, "You:")
        # Up arrow, then Enter: the same message again.
        child.send("\x1b[A\r")
        await asyncio.to_thread(child.expect, "Hello!")
        await asyncio.to_thread(child.expect, "You:")
        child.sendcontrol("d")
        await asyncio.to_thread(child.expect, pexpect.EOF)
    finally:
        child.close(force=True)
    view = await handle.query(AgentWorkflow.get_history)
    assert [m.content for m in view.messages if m.role == "user"] == ["Hello", "Hello"]
    # Kept for the next session (a line repeated at once is stored once).
    assert (tmp_path / "durable-agent" / "chat-history").read_text().count("+Hello") == 1
    print(f"\ntime to first text with OFFLINE_MODEL_LATENCY_MS=3000: {first_text:.2f} s")
    assert first_text < 2.5  # the whole answer takes over three seconds
    await handle.signal(AgentWorkflow.end_conversation)


def test_control_sequences_are_stripped_from_what_the_model_writes():
    hostile = "ok\x1b]0;pwned\x07 \x1b[2J\x1b[31mred\x1b[0m\tdone\r\n\x07bell\x9b"
    assert clean(hostile) == "ok red\tdone\nbell"


def test_the_demo_resume_hint_keeps_the_state_folder(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DEMO_STATE_DIR", "/tmp/my state")
    assert demo_command() == "DEMO_STATE_DIR='/tmp/my state' uv run demo"
    monkeypatch.delenv("DEMO_STATE_DIR")
    assert demo_command() == "uv run demo"


@pytest.mark.timeout(120)
async def test_ctrl_c_on_a_terminal_leaves_at_the_prompt_and_mid_turn(
    served: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("OFFLINE_MODEL_LATENCY_MS", "3000")

    def spawn(*args: str) -> pexpect.spawn:
        return spawn_client(served, tmp_path, *args)

    # Mid-turn: the live view is up, the terminal turns Ctrl-C into SIGINT.
    child = spawn()
    try:
        await asyncio.to_thread(child.expect, r"Conversation: (conversation-[0-9a-f]{8})")
        conversation = child.match.group(1).decode()
        await asyncio.to_thread(child.expect, "You:")
        child.send("Hello\r")
        await asyncio.to_thread(child.expect, "Hello!")
        child.sendcontrol("c")
        await asyncio.to_thread(child.expect, "The agent is still working on your last message")
        await asyncio.to_thread(child.expect, "stays open: resume it")
        await asyncio.to_thread(child.expect, pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    # At the prompt, after a turn: prompt_toolkit reads Ctrl-C as a key.
    child = spawn("--conversation-id", conversation)
    try:
        await asyncio.to_thread(child.expect, "You:")
        child.send("Hello\r")
        await asyncio.to_thread(child.expect, "real LLM")
        await asyncio.to_thread(child.expect, "You:")
        child.sendcontrol("c")
        await asyncio.to_thread(child.expect, "stays open: resume it")
        await asyncio.to_thread(child.expect, pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    handle = served.get_workflow_handle(conversation)
    await handle.signal(AgentWorkflow.end_conversation)

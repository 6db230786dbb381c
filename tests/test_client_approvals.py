"""Approving tool calls from the chat: `client.py` as a real process, piped and on a terminal.

The orchestrator and IT workers run in this process against the dev server (offline model, a
fresh sample Jira per test); the client runs as people run it. Piped input decides with
`/approve` and `/deny` while the turn waits, a second client attached to the conversation can
decide (and shows the answer), and a terminal asks `Allow ...? [y/N]`.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import app.it.activities as it_activities
from app.agent.llm.client import litellm_module
from app.agent.tools.approvals import ToolDecision
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.cli.chat.approvals import ApprovalDesk
from app.cli.chat.terminal import Terminal
from app.core.names import IT
from app.core.setup import ensure_nexus_setup
from app.it.activities import SampleJiraClient
from app.it.worker import it_worker
from tests.conftest import client_for
from tests.stack_processes import (
    ANSI_ESCAPE,
    PseudoTerminal,
    Running,
    program_env,
    run_program,
)

SLOW_LOGIN = "Create a Jira issue in PROJ: the login page is slow"
BROKEN_SEARCH = "Create a Jira issue in PROJ: the search is broken"
CREATED = (
    'Agent: I created PROJ-124 in PROJ: "The login page is slow" (priority Medium, '
    "https://jira.example.invalid/browse/PROJ-124; sample Jira (in memory, no Jira server "
    "configured))."
)
DENIED = "Agent: I did not create the Jira issue: the user denied this call: duplicate of PROJ-100"


@pytest.fixture(scope="module")
async def stack(dev_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """The dev server with the orchestrator (on its real queue) and IT workers in this process."""
    await ensure_nexus_setup(dev_env.client)
    await asyncio.to_thread(litellm_module)
    it_client = await client_for(dev_env, IT.namespace)
    async with orchestrator_worker(dev_env.client), it_worker(it_client):
        yield dev_env.client


@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch) -> SampleJiraClient:
    client = SampleJiraClient()
    monkeypatch.setattr(it_activities, "jira_client", client)
    return client


def client_env(client: Client) -> dict[str, str]:
    return program_env(TEMPORAL_ADDRESS=client.service_client.config.target_host)


async def end(client: Client, conversation_id: str) -> None:
    handle = client.get_workflow_handle(conversation_id)
    await handle.signal(AgentWorkflow.end_conversation)
    await handle.result()


async def test_piped_input_approves_and_denies_while_the_turn_waits(
    stack: Client, jira: SampleJiraClient
):
    lines = [
        SLOW_LOGIN,
        "/approve",  # the only call waiting: no id needed
        BROKEN_SEARCH,
        "What is my IP address?",  # held until the turn has answered
        "/deny duplicate of PROJ-100",
    ]
    result = await run_program(
        ["client.py"], stdin="\n".join(lines) + "\n", env=client_env(stack), timeout=90
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and ANSI_ESCAPE not in result.stdout
    transcript = result.stdout.splitlines()[3:-1]
    assert transcript[:4] == [
        f"You: {SLOW_LOGIN}",
        'Approval needed: create_jira_issue(project=PROJ, summary="The login page is slow", '
        f'description="Reported through the agent chat: {SLOW_LOGIN}", priority=Medium)',
        transcript[2],
        "Approved: create_jira_issue runs now.",
    ]
    assert re.fullmatch(
        r"  call call_2_0: /approve call_2_0 or /deny call_2_0 \[note\]; "
        r"counts as denied at \d\d:\d\d:\d\d \w+",
        transcript[2],
    )
    assert transcript[4:] == [
        CREATED,
        f"You: {BROKEN_SEARCH}",
        'Approval needed: create_jira_issue(project=PROJ, summary="The search is broken", '
        f'description="Reported through the agent chat: {BROKEN_SEARCH}", priority=High)',
        transcript[7],
        "Denied: create_jira_issue will not run; the agent is told why.",
        DENIED,
        "You: What is my IP address?",
        transcript[11],
    ]
    assert transcript[11].startswith("Agent: Your IP address is ")
    assert result.stderr == (
        "(held until the agent answers: create_jira_issue waits for /approve call_6_0 or "
        "/deny call_6_0 [note])\n"
    )
    assert [issue.summary for issue in jira.created.values()] == ["The login page is slow"]
    conversation = result.stdout.split("Conversation: ")[1].split()[0]
    await end(stack, conversation)


async def test_a_second_client_attached_to_the_conversation_decides(
    stack: Client, jira: SampleJiraClient
):
    first = await Running.start(["client.py"], env=client_env(stack))
    try:
        first.send(SLOW_LOGIN + "\n")
        await first.wait_for_output("Approval needed: create_jira_issue")
        conversation = first.stdout.split("Conversation: ")[1].split()[0]
        second = await run_program(
            ["client.py", "--conversation-id", conversation],
            stdin="/pending\n/approve call_2_0\n",
            env=client_env(stack),
            timeout=60,
        )
        await first.wait_for_output("Agent: I created PROJ-124", timeout=60)
        assert first.process.stdin is not None
        first.process.stdin.close()
        finished = await first.wait()
    finally:
        first.kill()
    assert second.returncode == 0, second.stderr
    waiting = second.stdout.splitlines()[3:]
    # Attached mid-turn, it joins the turn: the call that waits, as the first client saw it.
    assert waiting[0].startswith("Approval needed: create_jira_issue(project=PROJ, summary=")
    assert waiting[1].startswith("  call call_2_0: /approve call_2_0 or /deny call_2_0 [note];")
    # Then /pending lists it.
    assert waiting[2] == "Waiting for approval (1):"
    assert waiting[3].startswith("  call_2_0: create_jira_issue(project=PROJ, summary=")
    assert waiting[4].startswith("    /approve call_2_0 or /deny call_2_0 [note]; counts as")
    assert waiting[5] == "Approved: create_jira_issue runs now."
    # The turn belongs to the first client; the second one follows it and shows the answer too.
    assert waiting[6] == CREATED
    assert second.stdout.count("Agent: ") == 1
    assert finished.returncode == 0, finished.stderr
    assert (
        "create_jira_issue (call_2_0) no longer waits: it was decided elsewhere, or timed out."
        in finished.stdout
    )
    assert CREATED in finished.stdout
    assert len(jira.created) == 1
    await end(stack, conversation)


async def test_a_terminal_asks_y_or_n(stack: Client, jira: SampleJiraClient, tmp_path: Path):
    client = await PseudoTerminal.start(client_env(stack), tmp_path)
    # (prompt_toolkit draws the prompt's trailing space as a cursor move)
    question = "Allow create_jira_issue(project=PROJ, ...)? [y/N]"
    try:
        await client.wait_to_see("You:")
        client.type(SLOW_LOGIN + "\n")
        await client.wait_to_see(question)
        client.type("y\n")
        await client.wait_to_see("Agent: I created")
        client.type(BROKEN_SEARCH + "\n")
        await client.wait_to_see(question, 2)
        client.type("n duplicate of PROJ-100\n")
        await client.wait_to_see("Agent: I did not")
        client.type("Create a Jira issue in PROJ: printer jams\n")
        await client.wait_to_see("? [y/N]", 3)
        client.type("quit\n")  # leaves; the call goes on waiting
        assert await asyncio.wait_for(client.process.wait(), 20) == 0
    finally:
        await client.close()
    # As read: without control sequences, and with rich's wrapping of long answers undone.
    text = " ".join(client.shown().split())
    assert 'Allow create_jira_issue(project=PROJ, summary="Printer jams", ...)? [y/N]' in text
    assert "Approved: create_jira_issue runs now." in text
    assert "Denied: create_jira_issue will not run; the agent is told why." in text
    assert DENIED.removeprefix("Agent: ") in text
    assert re.search(
        r"create_jira_issue \(call_10_0\) still waits for approval until \d\d:\d\d:\d\d \w+: "
        r"resume and /approve call_10_0 or /deny call_10_0 \[note\]\.",
        text,
    ), text
    assert [issue.key for issue in jira.created.values()] == ["PROJ-124"]
    conversation = text.split("Conversation: ")[1].split()[0]
    handle = stack.get_workflow_handle(conversation)
    [pending] = (await handle.query(AgentWorkflow.get_pending_approvals)).calls
    decision = ToolDecision(
        call_id=pending.call_id,
        approve=False,
        approval_id=pending.approval_id,
        digest=pending.digest,
    )
    await handle.execute_update(AgentWorkflow.decide_tool_call, decision)
    await end(stack, conversation)


# --- The terminal and the desk, without a server ---------------------------------------------


def piped_terminal() -> tuple[Terminal, int, io.StringIO]:
    """A Terminal reading from a pipe, and the pipe's writing end."""
    read_end, write_end = os.pipe()
    stderr = io.StringIO()
    return Terminal(os.fdopen(read_end), io.StringIO(), stderr), write_end, stderr


async def test_a_read_abandoned_by_its_caller_hands_its_line_to_the_next_one():
    terminal, stdin, _ = piped_terminal()
    # A question settled elsewhere stops waiting for its answer; the line typed next is not lost.
    abandoned = asyncio.ensure_future(terminal.read_line(""))
    await asyncio.sleep(0.1)
    abandoned.cancel()
    os.write(stdin, b"hello\nworld\n")
    assert await asyncio.wait_for(terminal.read_line(""), 5) == "hello"
    assert await asyncio.wait_for(terminal.read_line(""), 5) == "world"
    os.close(stdin)
    assert await asyncio.wait_for(terminal.read_line(""), 5) is None


async def test_a_late_y_or_n_is_dropped_and_held_lines_come_first():
    terminal, stdin, stderr = piped_terminal()

    async def no_command(text: str) -> bool:
        raise AssertionError(text)

    desk = ApprovalDesk(terminal, lambda: None, no_command, {"quit"})  # type: ignore[arg-type,return-value]
    desk.held_lines.append("held message")
    desk._abandoned_question = True  # as after "no longer waits: it was decided elsewhere"
    os.write(stdin, b"y\nnext message\n")
    assert await asyncio.wait_for(desk.next_line("You: "), 5) == "held message"
    assert await asyncio.wait_for(desk.next_line("You: "), 5) == "next message"
    assert stderr.getvalue() == "That answer came too late: the call was no longer waiting.\n"
    os.close(stdin)

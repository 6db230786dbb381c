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
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rich.console import Console
from temporalio.client import Client, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment

import app.it.activities as it_activities
from app.agent.llm.client import litellm_module
from app.agent.models import AgentInput
from app.agent.stream.events import ApprovalDecided, ApprovalRequested, ToolCallFinished
from app.agent.tools.approvals import ToolDecision
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.cli.chat.approvals import ApprovalDesk, Question, decision_update_id
from app.cli.chat.live import LiveView
from app.cli.chat.terminal import Terminal
from app.core.names import IT, ORCHESTRATOR
from app.core.setup import ensure_nexus_setup
from app.it.activities import SampleJiraClient
from app.it.worker import it_worker
from tests.conftest import client_for
from tests.stack_processes import (
    ANSI_ESCAPE,
    DrawnTerminal,
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
        "create_jira_issue (call_2_0) no longer waits: it was approved elsewhere."
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


# Needs a workflow that publishes ApprovalRequested / ApprovalDecided on its stream.
SPINNER = re.compile(r"(sending|thinking|writing|calling|waiting for)[^\n]*\(\d+\.\d s\)")


async def test_a_question_decided_elsewhere_is_erased_and_a_denied_call_is_not_ok(
    stack: Client, jira: SampleJiraClient, tmp_path: Path
):
    """Items 1 and 2 of issue 22: an approval decided elsewhere (as with the `temporal` CLI)
    erases its y/N line and says so on a line of its own; no spinner stays on screen; a call
    denied with `n` ends with `not run: denied`, never `ok`."""
    env = client_env(stack) | {"XDG_STATE_HOME": str(tmp_path)}
    screen = DrawnTerminal.spawn(["client.py"], env, rows=30, cols=110)
    try:
        await screen.wait_to_see("You:")
        conversation = screen.text().split("Conversation: ")[1].split()[0]
        handle = stack.get_workflow_handle(conversation)
        screen.type(SLOW_LOGIN + "\r")
        await screen.wait_to_see("? [y/N]")
        [pending] = (await handle.query(AgentWorkflow.get_pending_approvals)).calls
        decision = ToolDecision(
            call_id=pending.call_id,
            approve=True,
            approval_id=pending.approval_id,
            digest=pending.digest,
        )
        await handle.execute_update(AgentWorkflow.decide_tool_call, decision)
        await screen.wait_to_see("no longer waits: it was approved elsewhere.")
        await screen.wait_to_see("Agent: I created")
        await screen.wait_to_see("You:", 2)
        screen.type(BROKEN_SEARCH + "\r")
        await screen.wait_to_see("? [y/N]")
        screen.type("n duplicate of PROJ-100\r")
        await screen.wait_to_see("Agent: I did not")
        await screen.wait_to_see("You:", 3)
        screen.type("quit\r")
        assert await screen.wait_to_exit() == 0
    finally:
        screen.close()
    lines = screen.lines()
    text = "\n".join(lines)
    # The first question was erased, not left half-answered; the note is a line of its own.
    assert "create_jira_issue (call_2_0) no longer waits: it was approved elsewhere." in lines
    assert text.count("? [y/N]") == 1, text
    assert "Allow create_jira_issue(project=PROJ, ...)? [y/N] n duplicate of PROJ-100" in lines
    # Item 2: the denied call did not run, and the screen says so.
    assert any(line.startswith("  <- create_jira_issue not run: denied (") for line in lines), text
    assert sum("<- create_jira_issue ok (" in line for line in lines) == 1, text
    # No spinner is left anywhere, neither over a prompt nor after quit.
    assert SPINNER.search(text) is None, text
    shown = [line for line in lines if line]
    assert shown[-2].startswith(f"Conversation {conversation} stays open"), text
    assert [issue.summary for issue in jira.created.values()] == ["The login page is slow"]
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

    desk = ApprovalDesk(terminal, lambda: None)  # type: ignore[arg-type,return-value]
    desk.held_lines.append("held message")
    desk.abandoned_question = True  # as after "no longer waits: it was decided elsewhere"
    os.write(stdin, b"y\nnext message\n")
    assert await asyncio.wait_for(desk.next_line("You: "), 5) == "held message"
    assert await asyncio.wait_for(desk.next_line("You: "), 5) == "next message"
    assert stderr.getvalue() == "That answer came too late: the call was no longer waiting.\n"
    os.close(stdin)


def test_the_same_decision_sent_again_has_the_same_update_id():
    decision = ToolDecision(call_id="call_2_0", approve=True, approval_id="a-1", digest="d")
    again = decision.model_copy()
    assert decision_update_id(decision) == decision_update_id(again)
    other = {
        decision_update_id(decision.model_copy(update=change))
        for change in ({"approve": False}, {"note": "why"}, {"approval_id": "a-2"})
    }
    assert len(other) == 3 and decision_update_id(decision) not in other


def test_a_refused_call_ends_as_not_run_never_ok():
    view = LiveView(Console(file=io.StringIO()))
    ended: list[str] = []
    for outcome in ("timed_out", "denied", "approved"):
        approval = f"approval-{outcome}"
        view.apply(
            ApprovalRequested(
                turn_id="t", approval_id=approval, tool="x", arguments="{}", digest="d"
            )
        )
        view.apply(ApprovalDecided(turn_id="t", approval_id=approval, outcome=outcome))
        finished = ToolCallFinished(turn_id="t", call_id="c", tool="x", ok=True, duration_ms=5)
        ended += [line.plain for line in view.apply(finished)]
    assert ended == [
        "  <- x not run: timed out (5 ms)",
        "  <- x not run: denied (5 ms)",
        "  <- x ok (5 ms)",
    ]


async def test_a_decision_retried_after_a_lost_answer_decides_once(
    stack: Client, jira: SampleJiraClient
):
    # The chat's own decision, sent twice with one Update id (as a retry after a lost answer):
    # the second gets the first one's result, not "already approved".
    handle = await stack.start_workflow(
        AgentWorkflow.run,
        AgentInput(),
        id=f"conversation-{uuid.uuid4().hex[:8]}",
        task_queue=ORCHESTRATOR.task_queue,
    )
    update = await handle.start_update(
        AgentWorkflow.send_message, SLOW_LOGIN, wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )
    pending: list = []
    while not pending:
        pending = (await handle.query(AgentWorkflow.get_pending_approvals)).calls
        await asyncio.sleep(0.1)
    out, err = io.StringIO(), io.StringIO()
    desk = ApprovalDesk(Terminal(io.StringIO(), out, err), lambda: handle)
    call = Question.of(pending[0])
    assert await desk.decide(call, True, "") and await desk.decide(call, True, "")
    assert err.getvalue() == ""
    assert out.getvalue() == "Approved: create_jira_issue runs now.\n" * 2
    assert (await update.result()).startswith("I created PROJ-124")
    assert len(jira.created) == 1
    await end(stack, handle.id)

"""MCP servers end to end on the dev server: real stdio servers started by the worker's plugin.

`mcp-server-time` is the default configuration, and the offline model answers "What time is it in
Tokyo?" through it. `mcp-server-git` runs against a temporary repository: its read tools run at
once, its write tool waits for a person's decision (approved: one commit; denied: none). A small
server of our own (`tests/mcp_fake_server.py`) crashes, hangs, fails and returns images on
request: each becomes a tool result the model reads, and the next turn works.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)

from app.agent.models import AgentConfig, AgentInput, AgentResult, Message
from app.agent.tools.activity import execute_tool
from app.agent.tools.approvals import ToolDecision, call_digest
from app.agent.tools.endpoints import check_endpoints
from app.agent.tools.mcp_config import DEFAULT_FILE, MCPConfig, load_config
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from tests.doubles import ScriptedLLM, asks, call, pending_calls, says, send, tool_results
from tests.test_demo import free_ports, run_demo

Handle = WorkflowHandle[AgentWorkflow, AgentResult]
ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def agent(
    client: Client,
    mcp: MCPConfig,
    llm: ScriptedLLM | None = None,
    config: AgentConfig | None = None,
) -> AsyncIterator[Handle]:
    """One conversation on an orchestrator worker with the MCP servers of `mcp`."""
    task_queue = f"mcp-{uuid.uuid4()}"
    options: dict[str, Any] = {"task_queue": task_queue, "mcp_config": mcp}
    if llm is not None:
        options["activities"] = [llm.plan_next_action, execute_tool, check_endpoints]
    async with orchestrator_worker(client, **options):
        handle = await client.start_workflow(
            AgentWorkflow.run,
            AgentInput(config=config or AgentConfig()),
            id=f"mcp-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        yield handle
        await handle.signal(AgentWorkflow.end_conversation)
        await handle.result()


def activity_types(events: Sequence[Any]) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def answer_with_results(messages: list[Message]) -> Message:
    return says(" | ".join(tool_results(messages)))


async def test_the_default_time_server_tells_the_time_in_tokyo(dev_client: Client):
    async with agent(dev_client, load_config(DEFAULT_FILE)) as handle:
        answer = await send(handle, "What time is it in Tokyo?")
        history = await handle.fetch_history()
    assert answer.startswith("In Asia/Tokyo it is "), answer
    assert "+09:00, from MCP time)." in answer
    # The worker's servers, their tools (once per run), then the call: all in the history.
    assert activity_types(history.events) == [
        "mcp_servers",
        "temporalio.mcp.time.list-tools",
        "plan_next_action",
        "temporalio.mcp.time.call-tool",
        "plan_next_action",
    ]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit and one staged, uncommitted file."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "agent@example.com")
    git(repo, "config", "user.name", "Agent Test")
    (repo / "README").write_text("hello\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "First commit")
    (repo / "notes.txt").write_text("remember the milk\n")
    git(repo, "add", "notes.txt")
    return repo


def git_config(repo: Path) -> MCPConfig:
    return MCPConfig.model_validate(
        {
            "mcpServers": {
                "git": {
                    "command": "mcp-server-git",
                    "args": ["--repository", str(repo)],
                }
            }
        }
    )


def git_llm(repo: Path) -> ScriptedLLM:
    """A model that asks for git_status, git_log or git_commit, as the user's message says."""

    def script(messages: list[Message]) -> Message:
        if messages[-1].role == "tool":
            return answer_with_results(messages)
        tool = (messages[-1].content or "").strip()
        arguments: dict[str, object] = {"repo_path": str(repo)}
        if tool == "git_commit":
            arguments["message"] = "Add notes"
        return asks(call(f"git__{tool}", arguments))

    return ScriptedLLM(script)


async def test_git_read_tools_run_at_once(dev_client: Client, repo: Path):
    llm = git_llm(repo)
    async with agent(dev_client, git_config(repo), llm) as handle:
        status = await send(handle, "git_status")
        log = await send(handle, "git_log")
        pending = await handle.query(AgentWorkflow.get_pending_approvals)
    assert "new file:   notes.txt" in status
    assert "First commit" in log
    assert pending.calls == []
    offered = {tool.name: tool.requires_approval for tool in llm.inputs[0].tools}
    assert offered["git__git_status"] is False
    assert offered["git__git_log"] is False
    assert offered["git__git_commit"] is True
    assert offered["git__git_reset"] is True  # destructiveHint


@pytest.mark.parametrize("approve", [True, False], ids=["approved", "denied"])
async def test_git_commit_waits_for_approval(dev_client: Client, repo: Path, approve: bool):
    async with agent(dev_client, git_config(repo), git_llm(repo)) as handle:
        update = await handle.start_update(
            AgentWorkflow.send_message, "git_commit", wait_for_stage=WorkflowUpdateStage.ACCEPTED
        )
        [pending] = await pending_calls(handle)
        # Nothing is committed while the call waits.
        assert git(repo, "rev-list", "--count", "HEAD").strip() == "1"
        # The same approval path as the catalog's writing tools: a decision must name the
        # workflow's approval id and the call's digest.
        for stale in ("", "0" * 16):
            wrong = ToolDecision(
                call_id=pending.call_id, approve=True, approval_id=pending.approval_id, digest=stale
            )
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update(AgentWorkflow.decide_tool_call, wrong)
        decision = ToolDecision(
            call_id=pending.call_id,
            approve=approve,
            note="not now",
            approval_id=pending.approval_id,
            digest=pending.digest,
        )
        await handle.execute_update(AgentWorkflow.decide_tool_call, decision)
        answer = await update.result()
    arguments = {"repo_path": str(repo), "message": "Add notes"}
    assert pending.tool == "git__git_commit"
    assert pending.arguments == arguments
    assert pending.approval_id == "1.1.0"
    assert pending.digest == call_digest("git__git_commit", arguments)
    commits = git(repo, "log", "--format=%s").splitlines()
    if approve:
        assert commits == ["Add notes", "First commit"]
        assert "Changes committed successfully" in answer
    else:
        assert commits == ["First commit"]
        assert answer == "Not run: the user denied this call: not now"


def fake_config(**extra: Any) -> MCPConfig:
    server = {"command": sys.executable, "args": ["-m", "tests.mcp_fake_server"], "cwd": str(ROOT)}
    return MCPConfig.model_validate({"mcpServers": {"fake": server | extra}})


def fake_llm() -> ScriptedLLM:
    """A model that calls the fake server's tool named by the message: `<tool> <text>`."""

    def script(messages: list[Message]) -> Message:
        if messages[-1].role == "tool":
            return answer_with_results(messages)
        tool, _, text = (messages[-1].content or "").partition(" ")
        if tool == "unknown":
            return asks(call("fake__no_such_tool", {"text": text}))
        if tool == "noargs":
            return asks(call("fake__shout", {}))
        argument = "city" if tool == "weather" else "text"
        return asks(call(f"fake__{tool}", {argument: text}))

    return ScriptedLLM(script)


async def test_results_errors_and_a_crash_become_results_the_model_reads(dev_client: Client):
    config = AgentConfig(mcp_max_attempts=2)
    async with agent(dev_client, fake_config(), fake_llm(), config) as handle:
        assert await send(handle, "shout hello") == "HELLO"
        assert await send(handle, "weather Oslo") == '{"celsius": 21.5, "city": "Oslo"}'
        picture = await send(handle, "picture sunset")
        broken = await send(handle, "broken this")
        no_args = await send(handle, "noargs")
        unknown = await send(handle, "unknown tool")
        crashed = await send(handle, "crash now")
        after_crash = await send(handle, "shout still here")
    assert picture == (
        "[image: image/png, about 900 bytes, not shown]\n"
        "[resource link: chart file:///tmp/chart.png]\ncaption: sunset"
    )
    # The server hides the exception's text; what it says is what the model reads.
    assert broken == "Error: the fake__broken tool reported an error: Error executing tool broken"
    # A JSON-RPC error or a tool error from the server: the model reads it, the turn ends.
    assert no_args.startswith("Error: the fake__shout tool "), no_args
    assert "text" in no_args
    assert unknown.startswith("Error: there is no tool named 'fake__no_such_tool'. Tools: ")
    assert crashed.startswith(
        "Error: the fake__crash tool is unavailable: MCP server fake did not answer"
    )
    assert after_crash == "STILL HERE"


async def test_a_hung_server_is_unavailable_and_the_next_turn_works(dev_client: Client):
    # The worker gives up on the request (read timeout) long before Temporal's timeouts, so the
    # connection is replaced and the next call starts a fresh server.
    config = AgentConfig(
        mcp_call_timeout_seconds=20, mcp_call_deadline_seconds=25, mcp_max_attempts=1
    )
    mcp = fake_config(read_timeout_seconds=4)
    async with agent(dev_client, mcp, fake_llm(), config) as handle:
        hung = await send(handle, "hang forever")
        after = await send(handle, "shout awake")
    assert hung.startswith("Error: the fake__hang tool is unavailable: MCP server fake did not")
    assert after == "AWAKE"


async def test_a_missing_server_offers_no_tools_and_the_conversation_goes_on(
    dev_client: Client,
):
    mcp = MCPConfig.model_validate({"mcpServers": {"gone": {"command": "/nonexistent/mcp"}}})
    config = AgentConfig(mcp_call_timeout_seconds=5, mcp_call_deadline_seconds=5)
    llm = ScriptedLLM(lambda messages: says(f"{len(messages)} messages"))
    async with agent(dev_client, mcp, llm, config) as handle:
        assert await send(handle, "hello") == "1 messages"
        assert await send(handle, "again") == "3 messages"
        history = await handle.fetch_history()
    assert [input.tools for input in llm.inputs] == [[], []]
    # Listed at the start of the run, tried again once in the next turn; never more.
    assert activity_types(history.events).count("temporalio.mcp.gone.list-tools") == 2


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_the_demo_tells_the_time_in_tokyo_from_the_default_mcp_server(tmp_path: Path):
    # The default configuration (no MCP_SERVERS_FILE), as a user runs `uv run demo`.
    result = await run_demo(
        tmp_path, "What time is it in Tokyo?\nquit\n", *free_ports(), MCP_SERVERS_FILE=None
    )
    assert result.returncode == 0, result.stderr
    [answer] = result.lines("Agent: ")
    assert answer.startswith("Agent: In Asia/Tokyo it is "), answer
    assert answer.endswith("+09:00, from MCP time).")

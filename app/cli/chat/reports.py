"""What the chat reports from the workflow's queries: the history, the usage, each turn's cost.

`/history` reads `get_history`, `/usage` and the dim line under each answer read `get_usage`. A
query fails when no worker can answer it; the user then gets one line saying so, and the chat
goes on.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import WorkflowHandle

from app.agent.llm.usage import ConversationUsage, TurnUsage
from app.agent.workflow import AgentWorkflow
from app.cli.chat.live import COMMAND_QUERY_TIMEOUT, QUERY_TIMEOUT, clean
from app.cli.chat.terminal import Terminal, format_history
from app.core.connection import one_line
from app.core.errors import failure_message


def turn_usage_line(turn: TurnUsage, seconds: float) -> str:
    """What one turn used, as the line under its answer: tokens, cost, calls, wall time."""
    return f"{turn.usage.summary()} · {seconds:.1f} s"


def format_usage(usage: ConversationUsage) -> list[str]:
    """The `/usage` report: the conversation's totals, then its recent turns."""
    total = usage.total
    turns = usage.earlier_turns + len(usage.turns)
    lines = [f"  total: {total.summary()} in {turns} {'turn' if turns == 1 else 'turns'}"]
    if usage.earlier_turns:
        lines.append(f"  ({usage.earlier_turns:,} earlier turns are counted in the total only)")
    lines += [
        f"  turn {turn.turn}: {turn.usage.summary()} · {turn.seconds:.1f} s"
        + (f" · {', '.join(turn.usage.models)}" if turn.usage.models else "")
        for turn in usage.turns
    ]
    if total.estimated_calls:
        lines.append(
            f"  ≈ estimated: the provider sent no usage for {total.estimated_calls:,} of "
            f"{total.calls:,} calls; their tokens are LiteLLM's count, or unknown"
        )
    if total.unpriced_calls:
        lines.append(
            f"  {total.unpriced_calls:,} calls have no price: a cost budget (AGENT_MAX_COST_USD, "
            "max_cost_usd) does not count them; LLM_PRICE_INPUT_PER_MTOK and "
            "LLM_PRICE_OUTPUT_PER_MTOK give the model one"
        )
    return lines


def _cannot_read(terminal: Terminal, what: str, workflow_id: str, err: Exception) -> None:
    terminal.error(
        f"Error: cannot read the {what} of {workflow_id}: "
        f"{one_line(failure_message(err), 160)} (is the orchestrator worker running?)"
    )


async def show_history(terminal: Terminal, handle: WorkflowHandle[AgentWorkflow, Any]) -> None:
    """Print the conversation from the workflow's `get_history` query."""
    try:
        view = await handle.query(AgentWorkflow.get_history, rpc_timeout=COMMAND_QUERY_TIMEOUT)
    except Exception as err:  # a query fails in several ways; all mean "not now"
        _cannot_read(terminal, "history", handle.id, err)
        return
    terminal.say(f"History of {handle.id}:")
    for line in format_history(view.messages, view.earlier_messages):
        # Model and tool output may hold control sequences that would retitle or clear a terminal.
        terminal.say(clean(line) if terminal.live else line)


async def show_usage(terminal: Terminal, handle: WorkflowHandle[AgentWorkflow, Any]) -> None:
    """Print the conversation's tokens and cost from the workflow's `get_usage` query."""
    try:
        usage = await handle.query(AgentWorkflow.get_usage, rpc_timeout=COMMAND_QUERY_TIMEOUT)
    except Exception as err:  # a query fails in several ways; all mean "not now"
        _cannot_read(terminal, "usage", handle.id, err)
        return
    terminal.say(f"Usage of {handle.id}:")
    for line in format_usage(usage):
        terminal.say(line)


# How often the usage line's query is tried when it fails (2 s each): one query stalled for 10 s
# on a loaded server while the next was answered at once.
USAGE_LINE_ATTEMPTS = 3


async def show_turn_usage(
    terminal: Terminal,
    handle: WorkflowHandle[AgentWorkflow, Any],
    update_id: str,
    seconds: float,
) -> None:
    """One dim line under an answer: what its turn used, and how long the user waited."""
    for attempt in range(USAGE_LINE_ATTEMPTS):
        if attempt:
            await asyncio.sleep(0.2)
        try:
            usage = await handle.query(AgentWorkflow.get_usage, rpc_timeout=QUERY_TIMEOUT)
        except Exception:  # the answer is what matters; /usage can say more later
            continue
        # Recorded before the answer was sent: if it is not listed, asking again will not help.
        turn = usage.turn_for_update(update_id)
        if turn is not None:
            terminal.note(turn_usage_line(turn, seconds))
        return

"""Explaining a long wait during a turn: no worker took the message, or the turn went quiet.

`watch_silence` runs beside each turn the chat shows. A message no worker accepts within a few
seconds gets one hint (is a worker running?); an accepted turn whose stream has said nothing for
long gets one `get_status` query, which tells a slow LLM (the query answers) from a worker that
is gone or a workflow task that keeps failing (it does not), and the latter gets one hint.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from app.agent.models import AgentStatus

# How often the watch checks how long the turn has been quiet.
SILENCE_CHECK_SECONDS = 0.5


@dataclass
class TurnInFlight:
    """What the progress line needs to know about the turn in flight."""

    started: float
    accepted: bool = False
    # When the conversation's stream last said something about the turn.
    last_event: float = 0.0


async def watch_silence(
    turn: TurnInFlight,
    report: Callable[[str], None],
    hint_after: tuple[float, float],
    slow_acceptance_hint: Callable[[], Awaitable[str | None]],
    status: Callable[[], Awaitable[tuple[AgentStatus | None, str]]],
    server_answers: Callable[[], Awaitable[bool]],
    silent_hint: Callable[[str], str],
) -> None:
    """Explain a slow acceptance, or a turn quiet for long (a worker gone, a failing task).

    `hint_after` is how long to wait before each hint: (not accepted, accepted but quiet). No
    hint blames the worker while the server itself does not answer (`server_answers`): the
    chat's retries name the server then."""
    accept_hint_seconds, silent_hint_seconds = hint_after
    hinted_accept = hinted_silent = False
    last_heard = turn.started
    while True:
        await asyncio.sleep(SILENCE_CHECK_SECONDS)
        now = time.monotonic()
        if not turn.accepted:
            if now - turn.started > accept_hint_seconds and not hinted_accept:
                hint = await slow_acceptance_hint()
                hinted_accept = hint is not None
                if hint is not None:
                    report(hint)
            continue
        last_heard = max(last_heard, turn.last_event)
        if now - last_heard > silent_hint_seconds and not hinted_silent:
            # Quiet for long: one query tells a busy LLM from a missing worker.
            current, problem = await status()
            if current is not None:
                last_heard = time.monotonic()
            elif await server_answers():
                hinted_silent = True
                report(silent_hint(problem))

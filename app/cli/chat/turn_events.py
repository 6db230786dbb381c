"""What can happen while a turn runs, as the events the turn's loop (`app.cli.chat.turn`) handles.

Each is put on the turn's one queue by the task that noticed it: the stream follower, the task
that sends the message and awaits its answer, a question's read, the silence watch, or (through
the terminal) the demo's supervisor.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.agent.stream.events import AgentEvent
from app.cli.chat.terminal import Notice


@dataclass(frozen=True)
class Streamed:
    """An event of this turn from the conversation's stream."""

    event: AgentEvent


@dataclass(frozen=True)
class CaughtUp:
    """The events published before the chat began following are all handed over."""


@dataclass(frozen=True)
class Accepted:
    """The workflow accepted the message (a worker took it up)."""


@dataclass(frozen=True)
class Answered:
    """The Update's result: the turn's answer."""

    text: str


@dataclass(frozen=True)
class Failed:
    """Sending or awaiting the answer failed; the error says why."""

    error: BaseException


@dataclass(frozen=True)
class Typed:
    """A line typed in answer to question number `asked` (None: end of input)."""

    line: str | None
    asked: int


@dataclass(frozen=True)
class Hint:
    """A line explaining a wait (no worker, a silent turn, lost contact with the server)."""

    text: str


@dataclass(frozen=True)
class WaitsUnannounced:
    """The status says a call waits for approval, but the stream announced none (a workflow
    older than the approval events): ask `get_pending_approvals`."""


@dataclass(frozen=True)
class StreamTail:
    """The stream has had its time to deliver the turn's last events."""


Event = (
    Streamed
    | CaughtUp
    | Accepted
    | Answered
    | Failed
    | Typed
    | Hint
    | StreamTail
    | WaitsUnannounced
    | Notice
)

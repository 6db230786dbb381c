"""The answers of recent messages, by their `send_message` Update id, carried across runs.

A sender that retries a message with the same Update id after the run changed (continue-as-new)
must get the answer, not a second run of the turn. So the workflow remembers the newest
`remembered_answers` ids and their answers, within `remembered_answers_bytes`: when large answers
pass that budget, the oldest are replaced by a short note with their size and digest, so every one
of those ids is still answered ("already answered"), never run again, whatever the answers' size.
A message that arrives while enough others wait for their answers is refused (`busy_refusal`).
"""

from __future__ import annotations

import hashlib

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from app.agent.models import AgentConfig, AnsweredMessage, utf8_size

ALREADY_ANSWERED = "This message was already answered"


def already_answered(answer: str) -> str:
    """What a retried message gets once its answer was too large to keep: a clear note."""
    if answer.startswith(ALREADY_ANSWERED):
        return answer
    digest = hashlib.sha256(answer.encode()).hexdigest()[:16]
    return (
        f"{ALREADY_ANSWERED} (an answer of {utf8_size(answer):,} bytes, sha256 {digest}...; "
        "it is in the conversation's history)."
    )


class AnsweredMessages:
    """The newest answers by Update id, oldest first, within the config's two bounds."""

    def __init__(self, records: list[AnsweredMessage], config: AgentConfig) -> None:
        self._answers = {record.update_id: record.answer for record in records}
        self._bytes = sum(utf8_size(answer) for answer in self._answers.values())
        self._config = config

    def for_this_update(self) -> str | None:
        """The recorded answer of the Update being handled, if it was answered before."""
        info = workflow.current_update_info()
        return self._answers.get(info.id) if info is not None else None

    def remember_for_this_update(self, answer: str) -> None:
        info = workflow.current_update_info()
        if info is not None:
            self.remember(info.id, answer)

    def remember(self, update_id: str, answer: str) -> None:
        self._answers[update_id] = answer
        self._bytes += utf8_size(answer)
        while len(self._answers) > self._config.remembered_answers:
            oldest = next(iter(self._answers))
            self._bytes -= utf8_size(self._answers.pop(oldest))
        for kept_id, kept in self._answers.items():
            if self._bytes <= self._config.remembered_answers_bytes:
                break
            note = already_answered(kept)
            self._answers[kept_id] = note
            self._bytes += utf8_size(note) - utf8_size(kept)

    def records(self) -> list[AnsweredMessage]:
        """What the next run takes along."""
        return [AnsweredMessage(update_id=i, answer=a) for i, a in self._answers.items()]


def busy_refusal(waiting: int, error_type: str) -> ApplicationError:
    """The validator's refusal of a message while `waiting` messages wait for their answers."""
    return ApplicationError(
        f"{waiting} messages are already waiting for their answers: send this one once an "
        "answer has come",
        type=error_type,
        non_retryable=True,
    )

"""Publishing the answer's text from inside `plan_next_action`, as the LLM streams it.

`TextPublisher` sends text to the conversation's Workflow Stream with
`WorkflowStreamClient.from_within_activity()`, coalescing the tokens that arrive within one batch
interval into one event (one signal, one history event per batch, not per token). Text still
unsent when the reply turns out to be the turn's answer is dropped: the workflow publishes the
answer whole, and clients print that in place of the streamed text. A retried
attempt first tells clients to drop the text the failed attempt showed, and a failing attempt
says that it failed, so a retry never shows doubled words. Settings come from the worker's
environment: `LLM_STREAM_TEXT=0` turns text streaming off (progress events only), and
`LLM_STREAM_BATCH_MS` sets the batch interval (default 300 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

from temporalio import activity
from temporalio.contrib.workflow_streams import TopicHandle, WorkflowStreamClient
from temporalio.exceptions import ApplicationError

from app.agent.stream.events import (
    EVENT_TYPE,
    EVENTS_TOPIC,
    AgentEvent,
    DropPartialText,
    LLMAttemptFailed,
    TextDelta,
)
from app.core.config import load_env

logger = logging.getLogger(__name__)

# A failed publish must not hold the LLM call's result hostage for the SDK's default 10 minutes.
MAX_PUBLISH_RETRY = timedelta(seconds=30)


@dataclass(frozen=True)
class StreamSettings:
    """Whether and how often the LLM activity publishes text."""

    stream_text: bool = True
    batch_interval_seconds: float = 0.3

    @classmethod
    def from_env(cls) -> StreamSettings:
        load_env()
        flag = (os.environ.get("LLM_STREAM_TEXT") or "1").strip().lower()
        batch_ms = float(os.environ.get("LLM_STREAM_BATCH_MS") or 300)
        return cls(
            stream_text=flag not in {"0", "false", "no", "off"},
            batch_interval_seconds=batch_ms / 1000,
        )


class TextPublisher:
    """The text of one LLM attempt, published in batches while it streams."""

    def __init__(self, turn_id: str, settings: StreamSettings | None = None) -> None:
        self.settings = settings or StreamSettings.from_env()
        self.turn_id = turn_id
        self.enabled = bool(turn_id) and activity.info().workflow_id is not None
        self.streams_text = self.enabled and self.settings.stream_text
        self._client: WorkflowStreamClient | None = None
        self._topic: TopicHandle[AgentEvent] | None = None
        self._pending = ""
        self._published_text = False
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TextPublisher:
        if not self.enabled:
            return self
        self._client = WorkflowStreamClient.from_within_activity(
            max_retry_duration=MAX_PUBLISH_RETRY
        )
        self._topic = self._client.topic(EVENTS_TOPIC, type=EVENT_TYPE)
        # Our own sender rather than the client's background flusher: leaving the client cancels
        # that flusher even in the middle of a signal, and waiting for it then took up to 15 s.
        self._sender = asyncio.create_task(self._send_batches())
        attempt = activity.info().attempt
        if attempt > 1:
            # The previous attempt may have shown text before it failed or its worker died.
            self._publish(DropPartialText(turn_id=self.turn_id, attempt=attempt - 1))
        return self

    def text(self, delta: str) -> None:
        """A piece of the answer; sent at once if the last batch left an interval ago."""
        if self.streams_text:
            self._pending += delta
            self._wake.set()

    def answered(self) -> None:
        """The attempt's reply is the turn's answer, which the workflow publishes whole
        (`TurnAnswered`) and clients print in place of the streamed text: text not sent yet is
        not sent at all, which spares a signal and a workflow task per turn."""
        self._pending = ""

    def restart(self) -> None:
        """The text so far is void (a fallback model answers in its place): clients drop it."""
        self._pending = ""
        if self._published_text:
            self._publish(DropPartialText(turn_id=self.turn_id, attempt=activity.info().attempt))
            self._published_text = False

    def failed(self, error: ApplicationError) -> None:
        """This attempt failed: its text is void, and Temporal may try again."""
        if self._topic is None:
            return
        self._pending = ""
        info = activity.info()
        if self._published_text:
            self._publish(DropPartialText(turn_id=self.turn_id, attempt=info.attempt))
        maximum = info.retry_policy.maximum_attempts if info.retry_policy else 0
        will_retry = not error.non_retryable and (maximum == 0 or info.attempt < maximum)
        self._publish(
            LLMAttemptFailed(
                turn_id=self.turn_id,
                attempt=info.attempt,
                error=str(error.message)[:300],
                will_retry=will_retry,
            )
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._sender is None:
            return
        self._closing.set()
        self._wake.set()
        try:
            # The last batch reaches the workflow before the activity's result does.
            await self._sender
        except Exception as err:  # live text is a courtesy: the answer itself is the result
            logger.warning("could not publish the answer's text: %s", err)

    def _publish(self, event: AgentEvent) -> None:
        if self._topic is not None:
            self._topic.publish(event)
            self._wake.set()

    async def _send_batches(self) -> None:
        assert self._client is not None
        while not self._closing.is_set():
            await self._wake.wait()
            self._wake.clear()
            started = time.monotonic()
            self._take_pending_text()
            await self._client.flush()
            # At most one batch per interval, but no waiting once the attempt is over.
            rest = self.settings.batch_interval_seconds - (time.monotonic() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), max(0.0, rest))
        self._take_pending_text()
        await self._client.flush()

    def _take_pending_text(self) -> None:
        if self._pending and self._topic is not None:
            self._topic.publish(TextDelta(turn_id=self.turn_id, text=self._pending))
            self._pending = ""
            self._published_text = True

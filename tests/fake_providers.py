"""Scripted LLM providers on 127.0.0.1 that speak OpenAI's and Anthropic's chat wire formats.

`FakeProvider` is a small aiohttp server on a free local port. Every request it receives is
recorded (path, headers, JSON body), and a script (a function of the request, which tests may
swap at any time) decides the reply: text, tool calls, an error status, or a reply that comes
too late. `OpenAIWire` and `AnthropicWire` build replies and read requests in each provider's
format, so one test can run against both providers by changing the wire it is given. A request
with `stream: true` gets the same reply as server-sent events, in the chunks each provider sends
(text in pieces, tool-call arguments split over several chunks, usage in a last chunk), and a
reply can drop the connection after some of them, as a provider or a proxy failing mid-answer
does. Real LiteLLM talks to these servers exactly as it would to the providers' APIs.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Protocol

import pytest
from aiohttp import web
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from app.core.config import load_env


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request as the fake provider received it."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any]
    at: float = 0.0  # time.monotonic() when it arrived

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))


@dataclass(frozen=True)
class Event:
    """One server-sent event of a streamed reply: its data (JSON, or text such as `[DONE]`) and
    its `event:` name; `usage` marks OpenAI's usage chunk, sent only when the client asks for it
    (`stream_options.include_usage`)."""

    data: dict[str, Any] | str
    event: str | None = None
    usage: bool = False

    def encode(self) -> bytes:
        data = self.data if isinstance(self.data, str) else json.dumps(self.data)
        name = f"event: {self.event}\n" if self.event else ""
        return f"{name}data: {data}\n\n".encode()


@dataclass(frozen=True)
class Reply:
    """What the fake provider answers: a status, a body (JSON, or text when a string), headers,
    and how long it waits first. `events` is the same reply streamed, for requests with
    `stream: true`; with `cut_after`, the stream stops after that many events and the connection
    drops; with `end_after`, it ends cleanly after that many events (what a server that gives up
    early, or a proxy that times out, sends); `event_delay_seconds` spaces the events out."""

    body: dict[str, Any] | str
    status: int = 200
    delay_seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Event] | None = None
    cut_after: int | None = None
    end_after: int | None = None
    event_delay_seconds: float = 0.0


Script = Callable[[ReceivedRequest], Reply]


class FakeProvider:
    """A scripted chat-completions server on a free port of 127.0.0.1; use it with `async with`."""

    def __init__(self, script: Script, paths: tuple[str, ...], port: int = 0) -> None:
        self.script = script
        self.paths = paths
        self.requests: list[ReceivedRequest] = []
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._wanted_port = port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, without any path."""
        if self._port is None:
            raise RuntimeError("the fake provider is not running")
        return f"http://127.0.0.1:{self._port}"

    async def __aenter__(self) -> FakeProvider:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Cancel a slow reply when its client gives up, so nothing outlives the test.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._wanted_port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        received = ReceivedRequest(
            method=request.method,
            path=request.path,
            headers={name.lower(): value for name, value in request.headers.items()},
            body=json.loads(text) if text else {},
            at=time.monotonic(),
        )
        self.requests.append(received)
        if request.method != "POST" or request.path not in self.paths:
            return web.json_response({"error": f"no route {request.path}"}, status=404)
        reply = self.script(received)
        if reply.delay_seconds:
            # Wait, but stop waiting when the server closes.
            try:
                await asyncio.wait_for(self._closing.wait(), reply.delay_seconds)
            except TimeoutError:
                pass
        if received.body.get("stream") and reply.events is not None and reply.status == 200:
            return await self._stream(request, received, reply)
        if isinstance(reply.body, str):
            # Not JSON: what a proxy or a server's framework sends (HTML, plain text).
            return web.Response(text=reply.body, status=reply.status, headers=reply.headers)
        return web.json_response(reply.body, status=reply.status, headers=reply.headers)

    async def _stream(
        self, request: web.Request, received: ReceivedRequest, reply: Reply
    ) -> web.StreamResponse:
        assert reply.events is not None
        options = received.body.get("stream_options") or {}
        events = [e for e in reply.events if not e.usage or options.get("include_usage")]
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            | reply.headers
        )
        await response.prepare(request)
        for sent, event in enumerate(events):
            if sent == reply.cut_after:
                # Gone mid-answer: no more events, no end of the chunked body.
                assert request.transport is not None
                request.transport.abort()
                return response
            if sent == reply.end_after:
                break
            if sent and reply.event_delay_seconds:
                await asyncio.sleep(reply.event_delay_seconds)
            await response.write(event.encode())
        await response.write_eof()
        return response


@dataclass(frozen=True)
class WireCall:
    """A tool call as a provider sends it: an id, a tool name and the arguments' JSON text."""

    id: str
    name: str
    arguments: str = "{}"

    @classmethod
    def of(cls, id: str, name: str, arguments: dict[str, Any]) -> WireCall:
        return cls(id, name, json.dumps(arguments))


@dataclass(frozen=True)
class WireToolResult:
    """A tool result as the client sent it back: the call's id and the text content."""

    call_id: str
    content: str
    is_error: bool = False


class Wire(Protocol):
    """One provider's wire format, seen from the server side."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def key_variable(self) -> str: ...
    @property
    def paths(self) -> tuple[str, ...]: ...

    def api_base(self, url: str) -> str: ...
    def text(self, text: str, model: str | None = None) -> Reply: ...
    def cut_by_length(self, text: str, *calls: WireCall) -> Reply: ...
    def tool_calls(self, *calls: WireCall) -> Reply: ...
    def error(self, status: int, message: str, code: str | None = None) -> Reply: ...
    def tool_schemas(self, request: ReceivedRequest) -> list[dict[str, Any]]: ...
    def tool_results(self, request: ReceivedRequest) -> list[WireToolResult]: ...
    def system_prompt(self, request: ReceivedRequest) -> str: ...
    def api_key(self, request: ReceivedRequest) -> str | None: ...


@dataclass(frozen=True)
class OpenAIWire:
    """The OpenAI Chat Completions API: `POST /v1/chat/completions` with `tool_calls`."""

    name: str = "openai"
    model: str = "openai/gpt-test"
    key_variable: str = "OPENAI_API_KEY"
    paths: tuple[str, ...] = ("/v1/chat/completions",)
    # The `usage` every reply reports: prompt and completion tokens, and cached prompt tokens.
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cached_tokens: int = 0

    def api_base(self, url: str) -> str:
        # Like https://api.openai.com/v1: LiteLLM appends /chat/completions.
        return f"{url}/v1"

    def _completion(self, message: dict[str, Any], finish: str, model: str | None) -> Reply:
        name = model or self.model.removeprefix("openai/")
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }
        body = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }
        return Reply(body, events=self._chunks(message, finish, name, usage))

    def _chunks(
        self, message: dict[str, Any], finish: str, model: str, usage: dict[str, Any]
    ) -> list[Event]:
        """`message` as OpenAI streams it: `chat.completion.chunk` deltas, then `[DONE]`."""

        def chunk(delta: dict[str, Any] | None, finish_reason: str | None = None) -> Event:
            choices = (
                []
                if delta is None
                else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
            )
            return Event(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": choices,
                }
            )

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in text_pieces(message.get("content"))]
        for index, call in enumerate(message.get("tool_calls") or []):
            function = call["function"]
            # The first delta names the call; its arguments' JSON follows in several pieces.
            opening = {"name": function["name"], "arguments": ""}
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": opening,
                            }
                        ]
                    }
                )
            )
            events += [
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in json_pieces(function["arguments"])
            ]
        events.append(chunk({}, finish))
        # With `stream_options.include_usage`: one last chunk, no choices, the usage.
        usage_chunk = chunk(None)
        assert isinstance(usage_chunk.data, dict)
        events.append(Event({**usage_chunk.data, "usage": usage}, usage=True))
        events.append(Event("[DONE]"))
        return events

    def text(self, text: str, model: str | None = None) -> Reply:
        return self._completion({"role": "assistant", "content": text}, "stop", model)

    def cut_by_length(self, text: str, *calls: WireCall) -> Reply:
        """A reply the output token limit cut: `finish_reason: "length"`."""
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = self._calls(calls)
        return self._completion(message, "length", None)

    def _calls(self, calls: tuple[WireCall, ...]) -> list[dict[str, Any]]:
        return [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in calls
        ]

    def tool_calls(self, *calls: WireCall) -> Reply:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in calls
            ],
        }
        return self._completion(message, "tool_calls", None)

    def error(self, status: int, message: str, code: str | None = None) -> Reply:
        # The types and codes OpenAI sends; LiteLLM reads both to choose an exception.
        kind, default_code = {
            401: ("invalid_request_error", "invalid_api_key"),
            429: ("requests", "rate_limit_exceeded"),
        }.get(status, ("invalid_request_error" if status < 500 else "server_error", None))
        error = {"message": message, "type": kind, "param": None, "code": code or default_code}
        return Reply({"error": error}, status=status)

    def tool_schemas(self, request: ReceivedRequest) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = request.body.get("tools", [])
        return tools

    def tool_results(self, request: ReceivedRequest) -> list[WireToolResult]:
        return [
            WireToolResult(m["tool_call_id"], m["content"])
            for m in _current_turn(request.body["messages"], "tool")
        ]

    def system_prompt(self, request: ReceivedRequest) -> str:
        first = request.body["messages"][0]
        return str(first["content"]) if first["role"] == "system" else ""

    def api_key(self, request: ReceivedRequest) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


@dataclass(frozen=True)
class AnthropicWire:
    """The Anthropic Messages API: `POST /v1/messages` with `tool_use` and `tool_result` blocks."""

    name: str = "anthropic"
    model: str = "anthropic/claude-test"
    key_variable: str = "ANTHROPIC_API_KEY"
    paths: tuple[str, ...] = ("/v1/messages",)

    def api_base(self, url: str) -> str:
        # Like https://api.anthropic.com: LiteLLM appends /v1/messages.
        return url

    def _message(self, content: list[dict[str, Any]], stop: str, model: str | None) -> Reply:
        body = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model or self.model.removeprefix("anthropic/"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }
        return Reply(body, events=self._events(body))

    def _events(self, body: dict[str, Any]) -> list[Event]:
        """`body` as Anthropic streams it: message_start, a start, deltas and a stop per content
        block (text in pieces, a tool's input JSON in pieces), message_delta, message_stop."""

        def event(kind: str, **data: Any) -> Event:
            return Event({"type": kind, **data}, event=kind)

        usage = {"input_tokens": 10, "output_tokens": 1}
        opening = {**body, "content": [], "stop_reason": None, "usage": usage}
        events = [event("message_start", message=opening)]
        for index, block in enumerate(body["content"]):
            start: dict[str, Any]
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in text_pieces(block["text"])]
            else:
                start = {**block, "input": {}}
                raw = block["input"].get("__raw__")
                written = raw if isinstance(raw, str) else json.dumps(block["input"])
                deltas = [
                    {"type": "input_json_delta", "partial_json": piece}
                    for piece in json_pieces(written)
                ]
            events.append(event("content_block_start", index=index, content_block=start))
            events += [event("content_block_delta", index=index, delta=d) for d in deltas]
            events.append(event("content_block_stop", index=index))
        stop = {"stop_reason": body["stop_reason"], "stop_sequence": None}
        events.append(event("message_delta", delta=stop, usage={"output_tokens": 5}))
        events.append(event("message_stop"))
        return events

    def text(self, text: str, model: str | None = None) -> Reply:
        return self._message([{"type": "text", "text": text}], "end_turn", model)

    def cut_by_length(self, text: str, *calls: WireCall) -> Reply:
        """A reply the output token limit cut: `stop_reason: "max_tokens"`."""
        blocks = [{"type": "text", "text": text}, *self._blocks(calls)]
        return self._message(blocks, "max_tokens", None)

    def tool_calls(self, *calls: WireCall) -> Reply:
        return self._message(self._blocks(calls), "tool_use", None)

    def _blocks(self, calls: tuple[WireCall, ...]) -> list[dict[str, Any]]:
        blocks = []
        for call in calls:
            try:
                arguments = json.loads(call.arguments)
            except ValueError:  # streamed as written (`partial_json`), as a model may write it
                arguments = {"__raw__": call.arguments}
            blocks.append(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments}
            )
        return blocks

    def error(self, status: int, message: str, code: str | None = None) -> Reply:
        kind = code or {
            400: "invalid_request_error",
            401: "authentication_error",
            429: "rate_limit_error",
            529: "overloaded_error",
        }.get(status, "api_error")
        return Reply({"type": "error", "error": {"type": kind, "message": message}}, status=status)

    def tool_schemas(self, request: ReceivedRequest) -> list[dict[str, Any]]:
        # In OpenAI's shape, to compare with the catalog's schemas.
        return [
            {
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "description": tool.get("description", ""),
                    "parameters": tool["input_schema"],
                },
            }
            for tool in request.body.get("tools", [])
        ]

    def tool_results(self, request: ReceivedRequest) -> list[WireToolResult]:
        results = []
        for message in _current_turn(request.body["messages"], "user"):
            content = message["content"]
            for block in content if isinstance(content, list) else []:
                if block.get("type") == "tool_result":
                    inner = block["content"]
                    text = (
                        inner
                        if isinstance(inner, str)
                        else "".join(part.get("text", "") for part in inner)
                    )
                    results.append(
                        WireToolResult(block["tool_use_id"], text, bool(block.get("is_error")))
                    )
        return results

    def system_prompt(self, request: ReceivedRequest) -> str:
        system = request.body.get("system", "")
        if isinstance(system, list):
            return "".join(block.get("text", "") for block in system)
        return str(system)

    def api_key(self, request: ReceivedRequest) -> str | None:
        return request.headers.get("x-api-key")


WIRES: tuple[Wire, ...] = (OpenAIWire(), AnthropicWire())


def ended_early(reply: Reply, after_events: int) -> Reply:
    """`reply` streamed only up to `after_events` events, then the stream ends cleanly."""
    return replace(reply, end_after=after_events)


def without_end_marker(reply: Reply) -> Reply:
    """`reply` streamed whole but for the provider's end: no finish reason and no `[DONE]` on
    OpenAI's wire, no `message_delta` (stop reason) and no `message_stop` on Anthropic's."""
    assert reply.events is not None
    return replace(reply, events=[e for e in reply.events if not _ends(e)])


def _ends(event: Event) -> bool:
    if event.data == "[DONE]" or event.event in ("message_delta", "message_stop"):
        return True
    choices = event.data.get("choices") if isinstance(event.data, dict) else None
    return bool(choices and choices[0].get("finish_reason") is not None)


def text_pieces(text: str | None) -> list[str]:
    """`text` in the pieces a model streams it in: a word and the space after it."""
    return re.findall(r"\S+\s*|\s+", text or "")


def json_pieces(arguments: str, size: int = 5) -> list[str]:
    """A tool call's arguments JSON in pieces of `size` characters, cutting through names and
    values as providers do."""
    return [arguments[i : i + size] for i in range(0, len(arguments), size)] or [""]


def _current_turn(messages: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    """The messages with `role` after the user's last own message (one that is not tool results)."""

    def written_by_user(message: dict[str, Any]) -> bool:
        content = message.get("content")
        return message["role"] == "user" and (
            isinstance(content, str)
            or any(isinstance(b, dict) and b.get("type") == "text" for b in content or [])
        )

    starts = [i for i, m in enumerate(messages) if written_by_user(m)]
    start = starts[-1] + 1 if starts else 0
    return [m for m in messages[start:] if m["role"] == role]


@dataclass
class InOrder:
    """A script that plays its replies in order, then repeats the last one."""

    replies: list[Reply]
    played: int = field(default=0)

    def __call__(self, request: ReceivedRequest) -> Reply:
        reply = self.replies[min(self.played, len(self.replies) - 1)]
        self.played += 1
        return reply


def unused_port() -> int:
    """A port on 127.0.0.1 with nothing listening (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---- The real agent, pointed at a fake provider ----

FAKE_KEY = "sk-test-SECRET-123"

# Everything that could point LiteLLM elsewhere: a developer's `.env` must not leak into a test.
LLM_VARIABLES = (
    "LLM_MODEL",
    "LLM_API_BASE",
    "LLM_API_KEY",
    "LLM_TIMEOUT_SECONDS",
    "LLM_TEMPERATURE",
    "LLM_MAX_TOKENS",
    "LLM_FALLBACKS",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
)


def use_provider(
    monkeypatch: pytest.MonkeyPatch,
    wire: Wire,
    api_base: str | None,
    key: str = FAKE_KEY,
    **variables: str,
) -> None:
    """Point the real `plan_next_action` at a provider, through the environment only."""
    load_env()
    for name in LLM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLM_MODEL", wire.model)
    if api_base is not None:
        monkeypatch.setenv("LLM_API_BASE", api_base)
    monkeypatch.setenv(wire.key_variable, key)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


@dataclass(frozen=True)
class PlanActivity:
    """One `plan_next_action` activity as the event history records it."""

    # The attempt that ended it; earlier attempts are counted, not recorded one by one.
    attempt: int
    # The error type of the attempt before the last one, if there was one (the dev server
    # records it; the time-skipping test server does not).
    last_failure_type: str | None
    # The error type it failed with, or None if it completed.
    failure_type: str | None
    non_retryable: bool


async def plan_activities(handle: WorkflowHandle[Any, Any]) -> list[PlanActivity]:
    """Every `plan_next_action` activity of the conversation, in order."""
    events = (await handle.fetch_history()).events
    scheduled = {
        event.event_id
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "plan_next_action"
    }
    started: dict[int, tuple[int, str | None]] = {}
    activities = []
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            last = attributes.last_failure if attributes.HasField("last_failure") else None
            started[attributes.scheduled_event_id] = (
                attributes.attempt,
                last.application_failure_info.type if last else None,
            )
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled_id = event.activity_task_completed_event_attributes.scheduled_event_id
            if scheduled_id in scheduled:
                activities.append(PlanActivity(*started[scheduled_id], None, False))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            failed = event.activity_task_failed_event_attributes
            if failed.scheduled_event_id in scheduled:
                info = failed.failure.application_failure_info
                activities.append(
                    PlanActivity(*started[failed.scheduled_event_id], info.type, info.non_retryable)
                )
    return activities

"""A deterministic offline model, registered with LiteLLM as the custom provider `offline`.

It lets the sample run with no API key and no network, and it goes through exactly the same
`litellm.acompletion` + native tool-calling path as a real provider: it reads the chat messages and
the `tools=` list, and answers either with tool calls or with text. It understands the README's
example requests (arithmetic, echo, IP address, stock prices, ROI, Jira metrics, creating a Jira
issue) and MCP servers' tools by their descriptions (`offline_mcp.py`), asks for several tools at
once when a message asks for several things, and writes the final answer from the tool results.
Anything else gets an honest answer about what it is and what it can do. It reports realistic
token counts (LiteLLM's `token_counter`) and costs nothing (its price in LiteLLM's model table is
0). `OFFLINE_MODEL_LATENCY_MS` adds a fixed delay per call, for benchmarks and crash tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from litellm import CustomLLM
from litellm.types.llms.openai import ChatCompletionToolCallChunk
from litellm.types.utils import (
    ChatCompletionMessageToolCall,
    Choices,
    Function,
    GenericStreamingChunk,
    ModelResponse,
    Usage,
)
from litellm.types.utils import Message as LiteLLMMessage

from app.agent.llm.offline_mcp import describe_mcp_result, mcp_tool_call
from app.agent.llm.offline_tokens import count_usage
from app.agent.tools.calculator import NAMES as CALCULATOR_NAMES

CAPABILITIES = (
    "I'm the offline model, so I only understand a few kinds of request: arithmetic "
    '("Calculate 15 * 23"), "Echo hello", "What is my IP address?", stock prices '
    '("What is the stock price of AAPL?"), ROI ("Calculate the ROI for $10000 invested at 5% '
    'for 10 years"), Jira metrics ("Show Jira metrics for project PROJ"), and the tools of MCP '
    'servers by their descriptions ("What time is it in Tokyo?"). '
    "Set LLM_MODEL and a provider key for a real LLM."
)

_NOT_TICKERS = {
    *("I", "A", "AND", "THE", "OF", "FOR", "WHAT", "IS", "IT", "ME", "MY", "TO", "IN", "IP"),
    *("ARE", "PRICE", "STOCK", "SHARE", "QUOTE", "GET", "SHOW", "TELL", "US", "ON"),
}
# An arithmetic expression: numbers, operators, parentheses and the calculator's names.
_EXPRESSION = re.compile(r"(?:[\d\s.+\-*/%(),]|\b(?:" + "|".join(CALCULATOR_NAMES) + r")\b)+", re.I)
# Several requests in one message: "... and ...", "...; ...", "..., ...", "... also ...".
_CLAUSE_SEPARATOR = re.compile(r"\s*(?:;|,\s+|\band then\b|\band\b|\balso\b)\s*", re.I)
_WORD_OPERATORS = [
    (r"\bmultiplied by\b|\btimes\b|×|(?<=\d)\s*x\s*(?=\d)", "*"),
    (r"\bdivided by\b|÷", "/"),
    (r"\bplus\b", "+"),
    (r"\bminus\b", "-"),
    (r"\bto the power of\b|\^", "**"),
]


@dataclass
class OfflineReply:
    """What the offline model says: text, or tool calls as (name, arguments) pairs."""

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _calculation(clause: str) -> dict[str, Any] | None:
    match = re.search(r"(?:calculate|compute|evaluate|what(?:'s| is))\s+(.+)", clause, re.I)
    expression = match.group(1) if match else clause
    for pattern, operator in _WORD_OPERATORS:
        expression = re.sub(pattern, f" {operator} ", expression, flags=re.I)
    expression = " ".join(expression.split()).rstrip("?.!= ")
    if _EXPRESSION.fullmatch(expression) and re.search(r"\d|\bpi\b|\be\b", expression, re.I):
        if re.search(r"[+\-*/%(]", expression):
            return {"expression": expression}
    return None


def _tickers(text: str) -> list[str]:
    """Ticker symbols in a request: upper-case words, or the word after "of"/"for" in any case."""
    words = re.findall(r"\b[A-Z]{1,5}(?:\.[A-Z])?\b", text)
    if not [word for word in words if word not in _NOT_TICKERS]:
        words = [
            w.upper() for w in re.findall(r"\b(?:of|for)\s+([a-z]{1,5}(?:\.[a-z])?)\b", text, re.I)
        ]
    return list(dict.fromkeys(word for word in words if word not in _NOT_TICKERS))


def _roi(clause: str) -> dict[str, Any] | None:
    if not re.search(r"\broi\b|return on investment|\binvest", clause, re.I):
        return None
    principal = re.search(
        r"\$\s*([\d,]+(?:\.\d+)?)|([\d,]+(?:\.\d+)?)\s*(?:dollars|usd)", clause, re.I
    )
    rate = re.search(r"([\d.]+)\s*(?:%|percent)", clause, re.I)
    years = re.search(r"([\d.]+)\s*years?", clause, re.I)
    if not (principal and rate and years):
        return None
    amount = (principal.group(1) or principal.group(2)).replace(",", "")
    return {
        "principal": float(amount),
        "rate": float(rate.group(1)),
        "years": float(years.group(1)),
    }


_NEW_ISSUE = re.compile(
    r"^\s*(?:please\s+)?(?:create|open|file|raise|log|add)\s+(?:a\s+|an\s+)?(?:new\s+)?"
    r"(?:jira\s+)?(?:issue|ticket|bug)\b(?:\s+(?:in|for|on)\s+(?:project\s+)?"
    r"(?P<project>[A-Za-z][A-Za-z0-9_]*))?\s*(?:[:,\-–]\s*|(?:saying|that|about)\s+)?"
    r"(?P<summary>.*)$",
    re.I | re.S,
)
_PRIORITY_WORDS = r"highest|high|medium|low|lowest"
_EXPLICIT_PRIORITY = re.compile(
    rf"[\s,(]*\b(?:(?P<a>{_PRIORITY_WORDS})\s+priority|priority\s*:?\s*(?P<b>{_PRIORITY_WORDS}))"
    r"\b[\s,)]*",
    re.I,
)
_URGENT = re.compile(
    r"\b(?:urgent|critical|outage|down|broken|crash\w*|security|cannot|can't|blocked)\b", re.I
)


def _new_issue(text: str) -> dict[str, Any] | None:
    """`create_jira_issue` arguments for "Create a Jira issue in PROJ: <what is wrong>"."""
    match = _NEW_ISSUE.match(text)
    if match is None or not match.group("project"):
        return None
    summary = match.group("summary")
    if explicit := _EXPLICIT_PRIORITY.search(summary):
        priority = (explicit.group("a") or explicit.group("b")).capitalize()
        summary = summary[: explicit.start()] + " " + summary[explicit.end() :]
    else:
        priority = "High" if _URGENT.search(summary) else "Medium"
    summary = " ".join(summary.split()).rstrip(" .!")
    if not summary:
        return None
    return {
        "project": match.group("project").upper(),
        "summary": summary[0].upper() + summary[1:],
        "description": f"Reported through the agent chat: {' '.join(text.split())}",
        "priority": priority,
    }


def _intents(clause: str) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls one clause of a user message asks for."""
    text = clause.strip()
    if match := re.match(r"^\s*(?:please\s+)?(?:echo|repeat|say)\s*:?\s+(.+)$", text, re.I | re.S):
        return [("echo", {"message": match.group(1).strip()})]
    if (roi := _roi(text)) is not None:
        return [("calculate_roi", roi)]
    if _NEW_ISSUE.match(text):
        # Without a project and a summary there is nothing to create: ask for them instead.
        issue = _new_issue(text)
        return [("create_jira_issue", issue)] if issue is not None else []
    if re.search(r"\bjira\b|\bproject metrics\b", text, re.I):
        project = re.search(r"\bproject\s+([A-Za-z][A-Za-z0-9_]*)", text, re.I)
        return [("jira_metrics", {"project": project.group(1) if project else ""})]
    if re.search(r"\bstocks?\b|\bshare price\b|\bquote\b|\bprices? of\b", text, re.I):
        return [("stock_price", {"ticker": ticker}) for ticker in _tickers(text)]
    if re.search(r"\bip\b|\bip address\b|\bhostname\b", text, re.I):
        return [("get_ip", {})]
    if (calculation := _calculation(text)) is not None:
        return [("calculator", calculation)]
    return []


def plan_for_user_message(message: str, tool_names: set[str]) -> OfflineReply:
    """Tool calls for a user message, or an honest answer when no tool fits."""
    # "Calculate 15 * 23 and what is my IP address?" asks for two tools at once: when every
    # clause asks for something, those are the calls; otherwise the message is one request
    # ("Echo salt and pepper", "the stock prices of AAPL and MSFT").
    clauses = [c for c in _CLAUSE_SEPARATOR.split(message) if c.strip()]
    per_clause = [_intents(clause) for clause in clauses] if len(clauses) > 1 else []
    if per_clause and all(per_clause):
        calls = [call for clause_calls in per_clause for call in clause_calls]
    else:
        calls = _intents(message)
    calls = [call for call in calls if call[0] in tool_names]
    if calls:
        return OfflineReply(tool_calls=calls)
    if _NEW_ISSUE.match(message):
        return OfflineReply(
            text="Which project, and what is wrong? For example: "
            '"Create a Jira issue in PROJ: the login page is slow".'
        )
    if re.match(r"^\s*(hi|hello|hey)\b", message, re.I):
        return OfflineReply(text=f"Hello! {CAPABILITIES}")
    return OfflineReply(text=f"I can't help with that. {CAPABILITIES}")


def _money(value: Any) -> str:
    return f"${float(value):,.2f}"


def describe_result(name: str, arguments: dict[str, Any], content: str) -> str:
    """One sentence about one tool result, for the final answer."""
    if content.startswith("Error"):
        problem = content.removeprefix("Error:").strip()
        # The workflow's own messages already name the tool ("the stock_price tool is ...").
        if problem.lower().startswith(f"the {name} tool"):
            return problem[0].upper() + problem[1:]
        return f"The {name} tool failed: {problem}"
    if content.startswith("Not run:"):
        reason = content.removeprefix("Not run:").strip()
        if name == "create_jira_issue":
            return f"I did not create the Jira issue: {reason}"
        return f"I did not run {name}: {reason}"
    try:
        data = json.loads(content)
    except ValueError:
        data = content
    if "__" in name:
        return describe_mcp_result(name, data)
    if not isinstance(data, dict):
        if name == "calculator":
            return f"{arguments.get('expression', '')} = {content}"
        return content
    if name == "get_ip":
        return f"Your IP address is {data.get('ip')} (host {data.get('hostname')})."
    if name == "stock_price":
        note = f", from {data['source']}" if data.get("source") else ""
        return f"{data.get('ticker')} is at {_money(data.get('price'))}{note}."
    if name == "calculate_roi":
        return (
            f"Investing {_money(data.get('principal'))} for {data.get('years'):g} years "
            f"({data.get('rate_interpretation', 'annual compounding')}) grows to "
            f"{_money(data.get('final_value'))}: a gain of {_money(data.get('gain'))}, "
            f"ROI {data.get('roi_percent')}%."
        )
    if name == "jira_metrics":
        return (
            f"Project {data.get('project')}: {data.get('open_issues')} open issues, "
            f"{data.get('in_progress')} in progress, {data.get('done_last_30_days')} done in the "
            f"last 30 days, average cycle time {data.get('average_cycle_time_days')} days "
            f"({data.get('source')})."
        )
    if name == "create_jira_issue":
        return (
            f'I created {data.get("key")} in {data.get("project")}: "{data.get("summary")}" '
            f"(priority {data.get('priority')}, {data.get('url')}; {data.get('source')})."
        )
    details = ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in data.items())
    return f"{name.replace('_', ' ').capitalize()}: {details}."


def answer_from_tool_results(messages: list[dict[str, Any]]) -> str:
    """The final answer: one sentence per tool result since the last user message."""
    arguments: dict[str, dict[str, Any]] = {}
    sentences: list[str] = []
    names: list[str] = []
    start = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    for message in messages[start + 1 :]:
        for call in message.get("tool_calls") or []:
            try:
                arguments[call["id"]] = json.loads(call["function"]["arguments"] or "{}")
            except ValueError:
                arguments[call["id"]] = {}
        if message.get("role") == "tool":
            args = arguments.get(message.get("tool_call_id") or "", {})
            names.append(message.get("name") or "tool")
            sentences.append(describe_result(names[-1], args, message["content"]))
    if len(sentences) > 1:
        # Several results read as several sentences, not "2**10 = 1024 hi 3+4 = 7".
        sentences = [
            ("Echo: " if name == "echo" else "") + s + ("" if s.endswith((".", "!", "?")) else ".")
            for name, s in zip(names, sentences, strict=True)
        ]
    return " ".join(sentences)


def offline_reply(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> OfflineReply:
    """The offline model's whole behaviour: plan tools for a new message, or answer from results."""
    last = messages[-1] if messages else {"role": "user", "content": ""}
    if last.get("role") == "tool":
        return OfflineReply(text=answer_from_tool_results(messages))
    text = str(last.get("content") or "")
    reply = plan_for_user_message(text, {tool["function"]["name"] for tool in tools})
    # Else an MCP server's tool, which the model knows only by its name and description.
    mcp_call = None if reply.tool_calls else mcp_tool_call(text, tools)
    return OfflineReply(tool_calls=[mcp_call]) if mcp_call else reply


class OfflineAgentLLM(CustomLLM):
    """LiteLLM custom provider that answers with `offline_reply`, whole or streamed."""

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        latency_ms = _latency_ms()
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        return _response(kwargs)

    async def astreaming(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        """The same reply, streamed: text word by word spread over the latency, tools at once.

        With no latency to spread the words over, the text is one chunk: LiteLLM's stream
        wrapper costs about half a millisecond of CPU per chunk, for words nobody could see
        arrive one by one.
        """
        reply, call_prefix = _reply(kwargs)
        latency = _latency_ms() / 1000
        words = re.findall(r"\S+\s*", reply.text or "")
        if not latency and words:
            words = [reply.text or ""]
        if not words:
            await asyncio.sleep(latency)
        for word in words:
            await asyncio.sleep(latency / len(words))
            yield _chunk(text=word)
        for index, (name, arguments) in enumerate(reply.tool_calls):
            tool_use: ChatCompletionToolCallChunk = {
                "id": f"{call_prefix}_{index}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
                "index": index,
            }
            yield _chunk(tool_use=tool_use)
        # The usage rides on the last chunk, as a provider sends it with `include_usage`.
        usage = _usage(kwargs, reply)
        yield _chunk(finish_reason="tool_calls" if reply.tool_calls else "stop", usage=usage)

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        raise NotImplementedError("the offline model is async only: use litellm.acompletion")


def _latency_ms() -> float:
    return float(os.environ.get("OFFLINE_MODEL_LATENCY_MS") or 0)


def _tools(kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = (kwargs.get("optional_params") or {}).get("tools") or []
    return tools


def _response(kwargs: dict[str, Any]) -> ModelResponse:
    """The whole reply to LiteLLM's call arguments, as a chat completion response."""
    reply, call_prefix = _reply(kwargs)
    tool_calls = [
        ChatCompletionMessageToolCall(
            id=f"{call_prefix}_{index}",
            type="function",
            function=Function(name=name, arguments=json.dumps(arguments)),
        )
        for index, (name, arguments) in enumerate(reply.tool_calls)
    ]
    message = LiteLLMMessage(role="assistant", content=reply.text, tool_calls=tool_calls or None)
    return ModelResponse(
        model=kwargs.get("model") or "agent",
        choices=[
            Choices(
                index=0,
                finish_reason="tool_calls" if tool_calls else "stop",
                message=message,
            )
        ],
        usage=_usage(kwargs, reply),
    )


def _usage(kwargs: dict[str, Any], reply: OfflineReply) -> Usage:
    return count_usage(kwargs.get("messages") or [], _tools(kwargs), reply.text, reply.tool_calls)


def _reply(kwargs: dict[str, Any]) -> tuple[OfflineReply, str]:
    """The reply to LiteLLM's call arguments, and the prefix of its tool-call ids."""
    messages: list[dict[str, Any]] = kwargs.get("messages") or []
    return offline_reply(messages, _tools(kwargs)), f"call_{len(messages)}"


def _chunk(
    text: str = "",
    tool_use: ChatCompletionToolCallChunk | None = None,
    finish_reason: str | None = None,
    usage: Usage | None = None,
) -> GenericStreamingChunk:
    return {
        "text": text,
        "tool_use": tool_use,
        "is_finished": finish_reason is not None,
        "finish_reason": finish_reason or "",
        "usage": None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
        "index": 0,
    }

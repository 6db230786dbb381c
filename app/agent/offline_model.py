"""A deterministic offline model, registered with LiteLLM as the custom provider `offline`.

It lets the sample run with no API key and no network, and it goes through exactly the same
`litellm.acompletion` + native tool-calling path as a real provider: it reads the chat messages and
the `tools=` list, and answers either with tool calls or with text. It understands the README's
example requests (arithmetic, echo, IP address, stock prices, ROI, Jira metrics, creating a Jira
issue), asks for several
tools at once when a message asks for several things, and writes the final answer from the tool
results. Anything else gets an honest answer about what it is and what it can do. It reports
realistic token counts (LiteLLM's `token_counter`) and costs nothing (its price in LiteLLM's
model table is 0). `OFFLINE_MODEL_LATENCY_MS` adds a fixed delay per call, for benchmarks and
crash tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from litellm import CustomLLM, token_counter
from litellm.types.utils import (
    ChatCompletionMessageToolCall,
    Choices,
    Function,
    ModelResponse,
    Usage,
)
from litellm.types.utils import Message as LiteLLMMessage

CAPABILITIES = (
    "I'm the offline model, so I only understand a few kinds of request: arithmetic "
    '("Calculate 15 * 23"), "Echo hello", "What is my IP address?", stock prices '
    '("What is the stock price of AAPL?"), ROI ("Calculate the ROI for $10000 invested at 5% '
    'for 10 years") and Jira metrics ("Show Jira metrics for project PROJ"). '
    "Set LLM_MODEL and a provider key for a real LLM."
)

_NOT_TICKERS = {"I", "A", "AND", "THE", "OF", "FOR", "WHAT", "IS", "IT", "ME", "MY", "TO", "IN"}
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
    if re.fullmatch(r"[\d\s.+\-*/%()]*\d[\d\s.+\-*/%()]*|[a-z0-9]+\(.*\)", expression, re.I):
        if re.search(r"[+\-*/%(]", expression):
            return {"expression": expression}
    return None


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
    if re.search(r"\bstock\b|\bshare price\b|\bquote\b|\bprice of\b", text, re.I):
        tickers = [
            word
            for word in re.findall(r"\b[A-Z]{1,5}(?:\.[A-Z])?\b", text)
            if word not in _NOT_TICKERS
        ]
        return [("stock_price", {"ticker": ticker}) for ticker in dict.fromkeys(tickers)]
    if re.search(r"\bip\b|\bip address\b|\bhostname\b", text, re.I):
        return [("get_ip", {})]
    if (calculation := _calculation(text)) is not None:
        return [("calculator", calculation)]
    return []


def plan_for_user_message(message: str, tool_names: set[str]) -> OfflineReply:
    """Tool calls for a user message, or an honest answer when no tool fits."""
    calls = _intents(message)
    if not calls:
        # "Calculate 15 * 23 and what is my IP address?" asks for two tools at once.
        clauses = re.split(r"\s*(?:;|\band then\b|\band\b|\balso\b)\s*", message, flags=re.I)
        if len(clauses) > 1:
            per_clause = [_intents(clause) for clause in clauses if clause.strip()]
            if all(per_clause):
                calls = [call for clause_calls in per_clause for call in clause_calls]
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
        return f"The {name} tool failed: {content.removeprefix('Error:').strip()}"
    if content.startswith("Not run:"):
        reason = content.removeprefix("Not run:").strip()
        if name == "create_jira_issue":
            return f"I did not create the Jira issue: {reason}"
        return f"I did not run {name}: {reason}"
    try:
        data = json.loads(content)
    except ValueError:
        data = content
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
    start = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    for message in messages[start + 1 :]:
        for call in message.get("tool_calls") or []:
            try:
                arguments[call["id"]] = json.loads(call["function"]["arguments"] or "{}")
            except ValueError:
                arguments[call["id"]] = {}
        if message.get("role") == "tool":
            args = arguments.get(message.get("tool_call_id") or "", {})
            sentences.append(
                describe_result(message.get("name") or "tool", args, message["content"])
            )
    return " ".join(sentences)


def offline_reply(messages: list[dict[str, Any]], tool_names: set[str]) -> OfflineReply:
    """The offline model's whole behaviour: plan tools for a new message, or answer from results."""
    last = messages[-1] if messages else {"role": "user", "content": ""}
    if last.get("role") == "tool":
        return OfflineReply(text=answer_from_tool_results(messages))
    return plan_for_user_message(str(last.get("content") or ""), tool_names)


def _usage(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], reply: OfflineReply
) -> Usage:
    """Tokens as a real model would count them: the prompt with the tools, and the reply."""
    tool_params: Any = tools or None
    prompt = token_counter(model=_TOKENIZER_MODEL, messages=messages, tools=tool_params)
    written = reply.text or json.dumps(reply.tool_calls)
    completion = token_counter(model=_TOKENIZER_MODEL, text=written, count_response_tokens=True)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


# Any model LiteLLM tokenizes with tiktoken's bundled encoding (no download).
_TOKENIZER_MODEL = "gpt-4o-mini"


def load_tokenizer() -> None:
    """Load the tokenizer now (about a second), rather than in the first offline call."""
    token_counter(model=_TOKENIZER_MODEL, text="")


class OfflineAgentLLM(CustomLLM):
    """LiteLLM custom provider that answers with `offline_reply`."""

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        latency_ms = float(os.environ.get("OFFLINE_MODEL_LATENCY_MS") or 0)
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        messages: list[dict[str, Any]] = kwargs.get("messages") or []
        tools = (kwargs.get("optional_params") or {}).get("tools") or []
        tool_names = {tool["function"]["name"] for tool in tools}
        reply = offline_reply(messages, tool_names)
        tool_calls = [
            ChatCompletionMessageToolCall(
                id=f"call_{len(messages)}_{index}",
                type="function",
                function=Function(name=name, arguments=json.dumps(arguments)),
            )
            for index, (name, arguments) in enumerate(reply.tool_calls)
        ]
        message = LiteLLMMessage(
            role="assistant", content=reply.text, tool_calls=tool_calls or None
        )
        return ModelResponse(
            model=kwargs.get("model") or "agent",
            choices=[
                Choices(
                    index=0,
                    finish_reason="tool_calls" if tool_calls else "stop",
                    message=message,
                )
            ],
            usage=_usage(messages, tools, reply),
        )

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        raise NotImplementedError("the offline model is async only: use litellm.acompletion")

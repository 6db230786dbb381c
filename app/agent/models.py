"""Typed payloads of the orchestrator: chat messages, workflow input, activity inputs and outputs.

Messages follow the chat format LiteLLM speaks natively (assistant messages carry `tool_calls`,
tool messages carry `tool_call_id`), so the history the workflow keeps is exactly what a provider
receives. Every workflow, activity and query takes and returns one of these models.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.common import RetryPolicy
from temporalio.contrib.workflow_streams import WorkflowStreamState

from app.agent.llm.usage import ConversationUsage, LLMUsage, UsageTotals
from app.agent.tools.mcp_tools import MCPToolSpec


class ToolCall(BaseModel):
    """A tool the model asked for, with its arguments as the JSON text the model wrote."""

    id: str
    name: str
    arguments: str = "{}"


class Message(BaseModel):
    """One chat message in LiteLLM's (OpenAI's) format."""

    role: Literal["user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    # Set on the user message and the answer of a turn that ended in an LLM failure: they stay in
    # the conversation the user sees, but are never sent to the LLM again, so a history that made
    # the provider fail cannot make every later turn fail the same way.
    skip_in_planning: bool = False

    @classmethod
    def user(cls, text: str) -> Message:
        return cls(role="user", content=text)

    @classmethod
    def assistant(cls, text: str) -> Message:
        return cls(role="assistant", content=text)

    @classmethod
    def tool_result(cls, call: ToolCall, content: str) -> Message:
        return cls(role="tool", tool_call_id=call.id, name=call.name, content=content)

    def to_chat(self) -> dict[str, Any]:
        """The message as a LiteLLM `messages` entry."""
        if self.role == "tool":
            return {
                "role": "tool",
                "tool_call_id": self.tool_call_id,
                "name": self.name,
                "content": self.content or "",
            }
        # Always a string: LiteLLM drops a `None` content, and llama.cpp's chat templates then
        # fail on every later request ("'dict object' has no attribute 'content'").
        chat: dict[str, Any] = {"role": self.role, "content": self.content or ""}
        if self.tool_calls:
            chat["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        return chat


class AgentConfig(BaseModel):
    """Limits and timeouts of one conversation; carried across continue-as-new."""

    max_steps_per_turn: int = 10
    max_message_chars: int = 32_000
    # Tool results are cut to this size before they enter the history the LLM sees.
    max_tool_result_chars: int = 16_000
    # A turn's byte budget. Everything a turn carries is recorded in the event history (planning
    # inputs once per step, tool results), and one payload over 2 MB fails the workflow task, so
    # each of these is bounded; a turn that reaches one ends with an answer saying so.
    max_tool_calls_per_step: int = 20
    max_tool_result_bytes_per_turn: int = 200_000
    max_plan_input_bytes: int = 256_000
    # The user message, planning inputs and tool results of one turn. Raise it with the planner
    # window.
    max_turn_bytes: int = 1_000_000
    # Each planning call receives the newest whole turns within these two budgets, so activity
    # inputs (and so history bytes per turn) stay bounded however long the chat runs. Raise them
    # for long-context models: the price is history bytes per turn. The activity then trims the
    # window further, by tokens, to fit the model's context.
    planner_window_chars: int = 48_000
    planner_window_messages: int = 40
    # A run stops accepting messages (they are refused with `ConversationRunFull`, to be retried
    # against the next run) and continues as new after this many turns, or when its event history
    # plus what its queued turns may add (`max_turn_bytes` and a bound on events per turn each)
    # plus the state it will carry would pass these budgets, or when the server suggests it: well
    # before the server's caps (50 MB and 51,200 events of history, 2,000 updates per run).
    max_turns_per_run: int = 200
    max_history_bytes_per_run: int = 20_000_000
    max_history_events_per_run: int = 20_000
    # The answers of recent messages (this many, and this many bytes at most) are carried across
    # continue-as-new, so a message retried with the same Update id after the run changed is
    # answered, not run again.
    remembered_answers: int = 200
    remembered_answers_bytes: int = 256_000
    # Messages waiting for their turn (the one running included) hold Update slots: the server
    # allows 10 in flight per conversation, and decisions on tool calls need one.
    max_queued_messages: int = 4
    # The conversation's event log handed to the next run, at most (older events are dropped).
    max_stream_state_bytes: int = 512_000
    llm_timeout_seconds: float = 120.0
    # The LLM activity heartbeats while it waits: a dead worker's call is retried this soon.
    llm_heartbeat_timeout_seconds: float = 10.0
    llm_retry_initial_seconds: float = 1.0
    llm_retry_max_seconds: float = 30.0
    llm_max_attempts: int = 8
    # All attempts of one planning call, retries and backoff included, end within this: a
    # provider that keeps timing out costs the user this long, then the turn answers.
    llm_deadline_seconds: float = 180.0
    local_tool_timeout_seconds: float = 10.0
    nexus_timeout_seconds: float = 20.0
    # Local tools are short and local: a local activity saves two round trips to the server.
    local_tools_as_local_activities: bool = True
    # This conversation's budget (None: no limit), checked before each LLM call. The operator's
    # AGENT_MAX_TOKENS / AGENT_MAX_COST_USD, read by the orchestrator worker, apply as well.
    max_total_tokens: int | None = None
    max_cost_usd: float | None = None
    # A tool call that needs a person's approval and gets no decision this soon counts as denied.
    approval_timeout_seconds: float = 600.0
    # MCP tools (app/agent/tools/mcp_toolbox.py): each attempt of a listing or a call, all of a
    # call's attempts together, and the attempts of a tool that does not write (one for those
    # that do: a retry could write twice).
    mcp_call_timeout_seconds: float = 30.0
    mcp_call_deadline_seconds: float = 60.0
    mcp_max_attempts: int = 3

    def llm_retry_policy(self) -> RetryPolicy:
        """The planning call's retry policy: Temporal owns LLM retries."""
        return RetryPolicy(
            initial_interval=timedelta(seconds=self.llm_retry_initial_seconds),
            maximum_interval=timedelta(seconds=self.llm_retry_max_seconds),
            maximum_attempts=self.llm_max_attempts,
        )


class AnsweredMessage(BaseModel):
    """A message's Update id and the answer it got, remembered across continue-as-new."""

    update_id: str
    answer: str


class AgentInput(BaseModel):
    """Input of the agent workflow: an earlier conversation to continue, and its limits."""

    history: list[Message] = Field(default_factory=list)
    config: AgentConfig = Field(default_factory=AgentConfig)
    turns_before_this_run: int = 0
    # Older messages stay in the event histories of earlier runs; only the window the planner
    # needs is carried, so a run's input never grows with the conversation.
    earlier_messages: int = 0
    # The newest answers, oldest first (at most `config.remembered_answers`).
    answered: list[AnsweredMessage] = Field(default_factory=list)
    # Tokens and cost so far: budgets and search attributes count the whole conversation.
    usage: ConversationUsage = Field(default_factory=ConversationUsage)
    # The conversation's event stream (its short log and publishers), handed to the next run.
    stream_state: WorkflowStreamState | None = None
    # The conversation's first message, named in the Web UI's current details of every run.
    first_message: str = ""


class AgentResult(BaseModel):
    """What the workflow returns when the conversation ends."""

    turns: int
    messages: int


class ConversationView(BaseModel):
    """The conversation as the `get_history` query returns it."""

    messages: list[Message]
    # How many messages come before `messages` (earlier runs', and older ones left out).
    earlier_messages: int = 0


class HistoryPage(BaseModel):
    """Input of `get_history_page`: the newest messages before message number `before`."""

    # A message's number counts from the conversation's first message; None: after the newest.
    before: int | None = None
    # A query's answer must stay below gRPC's 4 MB; the workflow caps this at 3 MB.
    max_bytes: int = 1_000_000


class AgentStatus(BaseModel):
    """What the agent is doing right now, for the client's progress line."""

    state: Literal["idle", "thinking", "calling_tools", "waiting_for_approval"] = "idle"
    detail: str = ""
    turns: int = 0
    queued_messages: int = 0
    model: str | None = None
    # The model the worker that answered this query is configured with, and why if offline.
    worker_model: str | None = None
    # The turn in progress (its `send_message` Update id) and the stream offset where its events
    # start: a client that attaches mid-turn shows the turn from there, each event once.
    turn_id: str | None = None
    turn_offset: int | None = None


class PlanInput(BaseModel):
    """Input of `plan_next_action`: the window of the conversation the LLM should see."""

    messages: list[Message]
    # What the conversation has used so far, for the worker's budget (AGENT_MAX_*).
    spent: UsageTotals = Field(default_factory=UsageTotals)
    # The turn (its `send_message` Update id) whose text the activity publishes as it arrives.
    turn_id: str = ""
    # The MCP servers' tools of this run, as listed at its start: offered beside the catalog's.
    tools: list[MCPToolSpec] = Field(default_factory=list)
    # Whether a client follows the conversation's stream: text is streamed only then (the
    # workflow knows from the stream's polls; inputs recorded before this field stream as before).
    watched: bool = True


class PlanOutput(BaseModel):
    """The LLM's next action: an assistant message with either text or tool calls."""

    message: Message
    model: str
    usage: LLMUsage = Field(default_factory=LLMUsage)
    # Earlier attempts of this call that reached the provider and failed: they are paid for too.
    failed_usage: list[LLMUsage] = Field(default_factory=list)
    # True when the worker's budget was spent: no LLM was called, `message` says why.
    budget_exhausted: bool = False


class EndpointCheck(BaseModel):
    """Input of `check_endpoints`: the Nexus endpoints a step is about to call."""

    endpoints: list[str]


class EndpointCheckResult(BaseModel):
    """Output of `check_endpoints`: those of them that do not exist on the server."""

    missing: list[str]


class ToolRequest(BaseModel):
    """Input of `execute_tool`: a local tool's name and its validated JSON arguments."""

    name: str
    arguments: str
    # Capped here, inside the activity, so a huge result never becomes a huge payload.
    max_result_chars: int = 16_000


class ToolResult(BaseModel):
    """Output of `execute_tool`: the text the LLM reads (a failure starts with "Error:")."""

    content: str


def cap_text(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with a note saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit:,} more characters cut]"


def utf8_size(text: str | None) -> int:
    """The size of `text` in UTF-8 bytes, which is what payload limits count."""
    return len(text.encode()) if text else 0


def cap_bytes(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` UTF-8 bytes (never inside a character), with a note."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    kept = encoded[:limit].decode(errors="ignore")
    return kept + f"\n[... {len(encoded) - len(kept.encode()):,} more bytes cut]"

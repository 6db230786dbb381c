"""What the conversation has cost: token and dollar counts per LLM call, per turn and in total.

`plan_next_action` measures each call (`LLMUsage`, from the provider's `usage` and LiteLLM's cost
map); the workflow adds the calls up per turn and per conversation (`ConversationUsage`, carried
across continue-as-new) and checks the budget before each call (`budget_refusal`). Everything
here is pure and deterministic, so the workflow can use it; a price LiteLLM does not know stays
unknown (`None`), never $0.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio.exceptions import ApplicationError

# What `LLMUsage.estimated_by` says when the counts are not the provider's.
LITELLM_ESTIMATE = "LiteLLM's token counter (the provider sent no usage)"
NO_USAGE = "nothing: the provider sent no usage"

# `get_usage` lists this many recent turns; the totals cover the whole conversation.
RECENT_TURNS = 20


class LLMUsage(BaseModel):
    """One LLM call: the provider's token counts and LiteLLM's price for the model that answered."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Prompt tokens the provider served from its cache (included in prompt_tokens).
    cached_tokens: int = 0
    # None when LiteLLM has no price for the model: unknown, not free.
    cost_usd: float | None = None
    # None when the provider reported the counts; else what estimated them (a server that sends
    # no usage in its stream, a call that failed midway).
    estimated_by: str | None = None
    # The model that answered the call (a fallback, perhaps), as LiteLLM names it.
    model: str | None = None


class UsageTotals(BaseModel):
    """Several LLM calls added up."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    # The cost of the calls with a known price; `unpriced_calls` says how many had none.
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    # Calls whose counts are estimates, not the provider's: the totals are approximate.
    estimated_calls: int = 0
    # The models that answered, first use first.
    models: list[str] = Field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, call: LLMUsage) -> None:
        """Count one more call."""
        self.calls += 1
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        self.cached_tokens += call.cached_tokens
        if call.cost_usd is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd += call.cost_usd
        if call.estimated_by is not None:
            self.estimated_calls += 1
        if call.model is not None and call.model not in self.models:
            self.models.append(call.model)

    def cost_text(self) -> str:
        """The cost as people read it: `$0.000210`, `cost unknown`, or both when mixed."""
        if self.calls and self.unpriced_calls == self.calls:
            return "cost unknown"
        known = f"${self.cost_usd:.6f}" if self.cost_usd < 1 else f"${self.cost_usd:,.4f}"
        if self.unpriced_calls:
            return f"{known} + {self.unpriced_calls} unpriced"
        return known

    def summary(self) -> str:
        """One line: tokens in and out, cost, LLM calls; "≈" marks counts that are estimates."""
        cached = f" ({self.cached_tokens:,} cached)" if self.cached_tokens else ""
        calls = "1 LLM call" if self.calls == 1 else f"{self.calls} LLM calls"
        about = "≈" if self.estimated_calls else ""
        cost = self.cost_text()
        if about and cost != "cost unknown":
            cost = about + cost
        return (
            f"{about}{self.prompt_tokens:,} in{cached} · {about}{self.completion_tokens:,} out · "
            f"{cost} · {calls}"
        )


class TurnUsage(BaseModel):
    """What one turn (one user message) used."""

    turn: int  # 1 for the conversation's first turn, across continue-as-new
    # The `send_message` Update's id, so a client can find the turn it sent.
    update_id: str | None = None
    usage: UsageTotals = Field(default_factory=UsageTotals)
    # Workflow time from the turn's start to its answer (waiting in the queue not included).
    seconds: float = 0.0


class ConversationUsage(BaseModel):
    """The `get_usage` query's answer: recent turns one by one, and the whole conversation."""

    total: UsageTotals = Field(default_factory=UsageTotals)
    turns: list[TurnUsage] = Field(default_factory=list)  # oldest first, at most RECENT_TURNS
    earlier_turns: int = 0  # turns no longer listed (they are in `total`)

    def record(self, turn: TurnUsage) -> None:
        """Add a finished turn to the list, dropping the oldest beyond RECENT_TURNS."""
        self.turns.append(turn)
        if len(self.turns) > RECENT_TURNS:
            dropped = len(self.turns) - RECENT_TURNS
            self.turns = self.turns[dropped:]
            self.earlier_turns += dropped

    def count(self, calls: list[LLMUsage], turn: TurnUsage | None) -> None:
        """Add calls to the totals and to the turn in progress, if any."""
        for call in calls:
            self.total.add(call)
            if turn is not None:
                turn.usage.add(call)

    def count_failure(self, cause: BaseException | None, turn: TurnUsage | None) -> None:
        """Count the failed attempts a planning call's error carries in its details (attempts
        that reached the provider and failed are paid for too)."""
        details = cause.details if isinstance(cause, ApplicationError) else ()
        calls = details[0] if details and isinstance(details[0], list) else []
        self.count([LLMUsage.model_validate(call) for call in calls], turn)

    def turn_for_update(self, update_id: str) -> TurnUsage | None:
        """The turn that answered the Update `update_id`, if it is still listed."""
        return next((turn for turn in self.turns if turn.update_id == update_id), None)


def budget_refusal(
    spent: UsageTotals,
    max_total_tokens: int | None,
    max_cost_usd: float | None,
    *,
    settings: tuple[str, str],
    how_to_raise: str,
) -> str | None:
    """None while the budget allows another LLM call, else the answer that explains why not.

    `settings` names the token and the cost limit for the reader (`AGENT_MAX_TOKENS`, ...);
    `how_to_raise` may mention `{setting}`, the one that was reached. The check runs before each
    call, so the last call allowed may go past the limit by its own usage. A cost limit counts
    only calls with a known price (`UsageTotals.cost_usd`).
    """
    if max_total_tokens is not None and spent.total_tokens >= max_total_tokens:
        limit, setting = f"{max_total_tokens:,} tokens", settings[0]
    elif max_cost_usd is not None and spent.cost_usd >= max_cost_usd:
        limit, setting = f"${max_cost_usd:g}", settings[1]
    else:
        return None
    return (
        f"I stopped before asking the language model again: this conversation has used "
        f"{spent.total_tokens:,} tokens ({spent.cost_text()}) in {spent.calls} LLM calls, and "
        f"its budget is {limit} ({setting}). {how_to_raise.format(setting=setting)} "
        "Commands such as /usage still work."
    )


def conversation_budget_refusal(
    spent: UsageTotals, max_total_tokens: int | None, max_cost_usd: float | None
) -> str | None:
    """`budget_refusal` for a conversation's own limits (`AgentConfig`)."""
    return budget_refusal(
        spent,
        max_total_tokens,
        max_cost_usd,
        settings=("AgentConfig.max_total_tokens", "AgentConfig.max_cost_usd"),
        how_to_raise="To go on, start a new conversation (/new) with a higher {setting}.",
    )

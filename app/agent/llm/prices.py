"""Prices for models LiteLLM's cost map does not know, and a plain word when a budget cannot work.

`LLM_PRICE_INPUT_PER_MTOK` and `LLM_PRICE_OUTPUT_PER_MTOK` (US dollars per million tokens) give
the configured model a price through LiteLLM's `register_model`, so its calls are priced and count
against a cost budget (`AGENT_MAX_COST_USD`). Without a price, a cost budget cannot stop anything:
`unpriced_budget_warning` says so, for the worker's start-up log.
"""

from __future__ import annotations

import functools

from app.agent.llm.client import BudgetSettings, LLMSettings, litellm_module


@functools.cache
def register_price(model: str, input_per_mtok: float, output_per_mtok: float) -> None:
    """Give LiteLLM's cost map a price for `model` (LLM_PRICE_*_PER_MTOK), once per process."""
    litellm = litellm_module()
    provider = model.partition("/")[0] if "/" in model else "openai"
    entry = {
        "litellm_provider": provider,
        "mode": "chat",
        "input_cost_per_token": input_per_mtok / 1_000_000,
        "output_cost_per_token": output_per_mtok / 1_000_000,
    }
    # LiteLLM looks a response's price up under the name the provider answered with, too.
    litellm.register_model({model: entry, model.partition("/")[2] or model: entry})


def apply_prices(settings: LLMSettings) -> None:
    """Register the configured model's price, when the operator gave one."""
    if settings.price_input_per_mtok is not None or settings.price_output_per_mtok is not None:
        register_price(
            settings.model,
            settings.price_input_per_mtok or 0.0,
            settings.price_output_per_mtok or 0.0,
        )


def unpriced_budget_warning(settings: LLMSettings, budget: BudgetSettings) -> str | None:
    """What to tell the operator when a cost budget is set on a model LiteLLM cannot price."""
    if budget.max_cost_usd is None or settings.model.startswith("offline/"):
        return None
    apply_prices(settings)
    try:
        info = litellm_module().get_model_info(settings.model)
        priced = info.get("input_cost_per_token") is not None
    except Exception:  # LiteLLM has no data for the model at all
        priced = False
    if priced:
        return None
    return (
        f"AGENT_MAX_COST_USD (${budget.max_cost_usd:g}) cannot limit {settings.model}: LiteLLM "
        "has no price for it, so its calls cost nothing in the budget; set "
        "LLM_PRICE_INPUT_PER_MTOK and LLM_PRICE_OUTPUT_PER_MTOK, or AGENT_MAX_TOKENS"
    )

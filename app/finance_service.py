"""The Finance team's Nexus contract: the operations it offers and their typed inputs and outputs.

This is what another team imports to call Finance tools; it depends on nothing but pydantic and
nexus-rpc. Each input model's docstring and field descriptions are written for an LLM: the agent's
tool catalog turns them into the JSON schema the model sees.
"""

from __future__ import annotations

import nexusrpc
from pydantic import BaseModel, Field


class StockPriceInput(BaseModel):
    """Get the current stock price for a ticker symbol."""

    ticker: str = Field(description="The ticker symbol, e.g. 'AAPL' or 'BRK.B'.")


class StockPriceOutput(BaseModel):
    """A stock quote."""

    ticker: str
    price: float
    currency: str
    source: str = Field(description="Where the price comes from.")


class CalculateRoiInput(BaseModel):
    """Calculate the return on an investment with annual compound interest."""

    principal: float = Field(description="The amount invested, e.g. 10000.")
    rate: float = Field(
        description="The annual interest rate, as a percentage (5) or a fraction (0.05)."
    )
    years: float = Field(description="How many years the money stays invested, e.g. 10.")


class CalculateRoiOutput(BaseModel):
    """The investment's value at the end, the gain and the ROI."""

    principal: float
    annual_rate_percent: float
    rate_interpretation: str = Field(description="How the given rate was read.")
    years: float
    final_value: float
    gain: float
    roi_percent: float


@nexusrpc.service
class FinanceService:
    """Tools owned by the Finance team."""

    stock_price: nexusrpc.Operation[StockPriceInput, StockPriceOutput]
    calculate_roi: nexusrpc.Operation[CalculateRoiInput, CalculateRoiOutput]

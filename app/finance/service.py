"""The Finance team's Nexus contract: the operations it offers and their typed inputs and outputs.

This is what another team imports to call Finance tools; it depends on nothing but pydantic and
nexus-rpc. Each input model's docstring and field descriptions are written for an LLM: the agent's
tool catalog turns them into the JSON schema the model sees. Input types stay plain (`str`,
`float`): the tool code checks their meaning, so a bad value comes back as a readable,
non-retryable error.
"""

from __future__ import annotations

import nexusrpc
from pydantic import BaseModel, Field


class StockPriceInput(BaseModel):
    """Get the current stock price for a ticker symbol."""

    ticker: str = Field(
        description="The ticker symbol: 1 to 5 letters, optionally with a class suffix.",
        examples=["AAPL", "BRK.B"],
    )


class StockPriceOutput(BaseModel):
    """A stock quote."""

    ticker: str
    price: float
    currency: str
    source: str = Field(description="Where the price comes from; says so when it is sample data.")


class CalculateRoiInput(BaseModel):
    """Calculate the return on an investment with annual compound interest."""

    principal: float = Field(description="The amount invested, a positive number, e.g. 10000.")
    rate: float = Field(
        description=(
            "The annual interest rate, as a percentage (5) or a fraction (0.05); "
            "a value above 1 is read as a percentage."
        )
    )
    years: float = Field(
        description="How many years the money stays invested, from 0 to 100, e.g. 10."
    )


class CalculateRoiOutput(BaseModel):
    """The investment's value at the end, the gain and the ROI."""

    principal: float
    annual_rate_percent: float
    rate_interpretation: str = Field(description="How the given rate was read.")
    years: float
    final_value: float = Field(description="The value after the last year, rounded to cents.")
    gain: float = Field(description="final_value minus principal.")
    roi_percent: float = Field(description="The gain as a percentage of the principal.")


@nexusrpc.service
class FinanceService:
    """Tools owned by the Finance team."""

    stock_price: nexusrpc.Operation[StockPriceInput, StockPriceOutput]
    calculate_roi: nexusrpc.Operation[CalculateRoiInput, CalculateRoiOutput]

"""The Finance team's tool code: stock quotes and compound-interest ROI.

There is no market feed here, so `SampleMarketData` returns deterministic sample prices that say
so; a real feed only has to implement `MarketDataClient`. `compute_roi` is real arithmetic. Bad
arguments raise `InvalidToolArguments` with a message written for the LLM that sent them.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Protocol

from app.core.tool_errors import InvalidToolArguments
from app.finance.service import CalculateRoiInput, CalculateRoiOutput, StockPriceOutput

_TICKER = re.compile(r"[A-Z]{1,5}(\.[A-Z])?")
MAX_YEARS = 100
# In percent. Anything above is a typo or a joke, and compounding it for decades overflows.
MAX_RATE_PERCENT = 100


def ticker_symbol(ticker: str) -> str:
    """A ticker symbol, upper-cased; raises InvalidToolArguments for anything else."""
    symbol = ticker.strip().upper()
    if not symbol:
        raise InvalidToolArguments("the ticker symbol is empty: give one such as 'AAPL'")
    if not _TICKER.fullmatch(symbol):
        raise InvalidToolArguments(
            f"{ticker!r} is not a ticker symbol: use 1 to 5 letters, optionally with a class "
            "suffix, such as 'AAPL' or 'BRK.B'"
        )
    return symbol


class MarketDataClient(Protocol):
    """What the Finance tools need from a market-data feed."""

    async def quote(self, ticker: str) -> StockPriceOutput: ...


# The tickers the sample feed knows; any other symbol is unknown, not given an invented price.
SAMPLE_TICKERS = ("AAPL", "AMZN", "BRK.B", "GOOGL", "JPM", "META", "MSFT", "NVDA", "TSLA", "V")


class SampleMarketData:
    """Deterministic sample prices for `SAMPLE_TICKERS`, the same for a ticker every time."""

    async def quote(self, ticker: str) -> StockPriceOutput:
        """A sample price for `ticker`, derived from a hash of the symbol."""
        if ticker not in SAMPLE_TICKERS:
            raise InvalidToolArguments(
                f"unknown ticker {ticker!r}: the sample market data (no market feed configured) "
                f"has {', '.join(SAMPLE_TICKERS)}"
            )
        seed = int.from_bytes(hashlib.sha256(ticker.encode()).digest()[:8], "big")
        return StockPriceOutput(
            ticker=ticker,
            price=round(20 + (seed % 48_000) / 100, 2),
            currency="USD",
            source="sample data (no market feed configured)",
        )


market_data: MarketDataClient = SampleMarketData()


async def stock_quote(ticker: str) -> StockPriceOutput:
    """The price of one ticker from the configured feed."""
    return await market_data.quote(ticker_symbol(ticker))


def compute_roi(input: CalculateRoiInput) -> CalculateRoiOutput:
    """Annual compound interest: final = principal * (1 + rate) ** years, money in cents."""
    # NaN passes every comparison below, and JSON from an LLM can carry it: reject it first.
    if not all(math.isfinite(v) for v in (input.principal, input.rate, input.years)):
        raise InvalidToolArguments("principal, rate and years must be finite numbers")
    if input.principal <= 0:
        raise InvalidToolArguments("the principal must be a positive amount")
    if not 0 <= input.years <= MAX_YEARS:
        raise InvalidToolArguments(f"years must be between 0 and {MAX_YEARS}")
    if not 0 <= input.rate <= MAX_RATE_PERCENT:
        raise InvalidToolArguments(
            f"the rate must be between 0 and {MAX_RATE_PERCENT} percent (or 0 and 1 as a fraction)"
        )
    # A rate above 1 can only be a percentage; 1 or less is read as a fraction (0.05 = 5%). The
    # output says which reading was used, so the LLM can correct a misread 0.5%.
    if input.rate > 1:
        fraction, reading = input.rate / 100, f"{input.rate:g} was read as {input.rate:g}% per year"
    else:
        fraction = input.rate
        reading = f"{input.rate:g} was read as a fraction: {input.rate * 100:g}% per year"
    final_value = round(input.principal * (1 + fraction) ** input.years, 2)
    if not math.isfinite(final_value):
        raise InvalidToolArguments("the result is too large to compute: use a smaller principal")
    gain = round(final_value - input.principal, 2)
    return CalculateRoiOutput(
        principal=input.principal,
        annual_rate_percent=round(fraction * 100, 6),
        rate_interpretation=reading,
        years=input.years,
        final_value=final_value,
        gain=gain,
        roi_percent=round(gain / input.principal * 100, 2),
    )

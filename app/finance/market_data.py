"""The Finance team's market-data feed: ticker symbols, the feed client, and sample prices.

There is no market feed here, so `SampleMarketData` returns deterministic sample prices that say
so; a real feed only has to implement `MarketDataClient` and be assigned to `market_data`. A bad
ticker raises `InvalidToolArguments` with a message written for the LLM that sent it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

from app.core.tool_errors import InvalidToolArguments
from app.finance.service import StockPriceOutput

_TICKER = re.compile(r"[A-Z]{1,5}(\.[A-Z])?")


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

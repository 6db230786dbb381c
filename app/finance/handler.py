"""The Finance team's Nexus handlers.

Both operations are sync: a quote from a feed client and a compound-interest formula answer in
milliseconds, so a workflow per call would only add latency (a workflow start, an activity and
several history writes) for no durability the caller lacks: the caller's own Nexus call already
retries a failed attempt until its timeout. If the feed became slow or flaky, `stock_price` would
become workflow-backed, as IT's `jira_metrics` is, without any change for callers. Bad arguments
fail at once with a non-retryable `InvalidToolArguments` error the LLM can read.
"""

from __future__ import annotations

import nexusrpc
import nexusrpc.handler

from app.core.tool_errors import InvalidToolArguments, non_retryable
from app.finance.market_data import stock_quote
from app.finance.roi import compute_roi
from app.finance.service import (
    CalculateRoiInput,
    CalculateRoiOutput,
    FinanceService,
    StockPriceInput,
    StockPriceOutput,
)


@nexusrpc.handler.service_handler(service=FinanceService)
class FinanceServiceHandler:
    """Serves FinanceService from the Finance namespace."""

    @nexusrpc.handler.sync_operation
    async def stock_price(
        self, ctx: nexusrpc.handler.StartOperationContext, input: StockPriceInput
    ) -> StockPriceOutput:
        """The ticker's price from the configured market-data feed."""
        try:
            return await stock_quote(input.ticker)
        except InvalidToolArguments as err:
            # A plain exception would be retried until the caller's timeout.
            raise non_retryable(err) from None

    @nexusrpc.handler.sync_operation
    async def calculate_roi(
        self, ctx: nexusrpc.handler.StartOperationContext, input: CalculateRoiInput
    ) -> CalculateRoiOutput:
        """Compound interest on the investment, annually compounded."""
        try:
            return compute_roi(input)
        except InvalidToolArguments as err:
            raise non_retryable(err) from None

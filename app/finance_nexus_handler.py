"""The Finance team's Nexus handlers.

Both operations are sync: a quote from a feed client and a compound-interest formula answer in
milliseconds, so a workflow per call would only add latency. If the feed became slow or flaky, the
`stock_price` operation would move to a workflow-backed one, as IT's `jira_metrics` is, without
any change for callers. Bad arguments fail at once with a non-retryable error.
"""

from __future__ import annotations

import nexusrpc
import nexusrpc.handler

from app.finance_activities import compute_roi, stock_quote
from app.finance_service import (
    CalculateRoiInput,
    CalculateRoiOutput,
    FinanceService,
    StockPriceInput,
    StockPriceOutput,
)
from app.tool_errors import InvalidToolArguments, non_retryable


@nexusrpc.handler.service_handler(service=FinanceService)
class FinanceServiceHandler:
    """Serves FinanceService from the Finance namespace."""

    @nexusrpc.handler.sync_operation
    async def stock_price(
        self, ctx: nexusrpc.handler.StartOperationContext, input: StockPriceInput
    ) -> StockPriceOutput:
        try:
            return await stock_quote(input.ticker)
        except InvalidToolArguments as err:
            raise non_retryable(err) from None

    @nexusrpc.handler.sync_operation
    async def calculate_roi(
        self, ctx: nexusrpc.handler.StartOperationContext, input: CalculateRoiInput
    ) -> CalculateRoiOutput:
        try:
            return compute_roi(input)
        except InvalidToolArguments as err:
            raise non_retryable(err) from None

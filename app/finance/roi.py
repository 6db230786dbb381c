"""The Finance team's return-on-investment formula: annual compound interest, money in cents.

Bad arguments (not finite, out of range) raise `InvalidToolArguments` with a message written for
the LLM that sent them; the result says how the rate was read, so a misread rate can be corrected.
"""

from __future__ import annotations

import math

from app.core.tool_errors import InvalidToolArguments
from app.finance.service import CalculateRoiInput, CalculateRoiOutput

MAX_YEARS = 100
# In percent. Anything above is a typo or a joke, and compounding it for decades overflows.
MAX_RATE_PERCENT = 100


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

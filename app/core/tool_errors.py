"""The one exception every team's tool code raises for arguments that can never work.

Handlers and activities turn it into a non-retryable `ApplicationError`, so the agent loop hears
about a bad argument at once and can tell the LLM, instead of retrying until a timeout.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError


class InvalidToolArguments(ValueError):
    """The tool's arguments are invalid; retrying with the same ones cannot succeed."""


def non_retryable(err: InvalidToolArguments) -> ApplicationError:
    """`err` as an error Temporal and Nexus callers do not retry."""
    return ApplicationError(str(err), type="InvalidToolArguments", non_retryable=True)

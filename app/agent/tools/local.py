"""The agent's local tools, `calculator` and `echo`: their input models and their code.

The input models are the single definition of each tool's arguments: the LLM's JSON schema is
derived from them, the workflow validates the LLM's arguments against them, and the
`execute_tool` activity runs the functions below, which the tool catalog registers.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.agent.tools.calculator import CalculatorError, evaluate, format_result
from app.core.tool_errors import InvalidToolArguments


class CalculatorInput(BaseModel):
    """Evaluate an arithmetic expression, e.g. '15 * 23' or 'sqrt(2) * 10'."""

    expression: str = Field(
        description="Arithmetic with + - * / // % ** and parentheses, and functions such as "
        "sqrt, log, sin, round. Example: '(1500 * 1.05) ** 2'."
    )


class EchoInput(BaseModel):
    """Repeat a message back, word for word."""

    message: str = Field(description="The text to repeat.")


def calculator(args: CalculatorInput) -> str:
    """The value of the expression, as text."""
    try:
        return format_result(evaluate(args.expression))
    except CalculatorError as err:
        raise InvalidToolArguments(f"cannot calculate {args.expression!r}: {err}") from err


def echo(args: EchoInput) -> str:
    """The message itself."""
    return args.message

"""The agent's local tools, `calculator` and `echo`: their input models and their code.

The input models are the single definition of each tool's arguments: the LLM's JSON schema is
derived from them, the workflow validates the LLM's arguments against them, and the
`execute_tool` activity runs the code below.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field

from app.calculator import CalculatorError, evaluate, format_result
from app.tool_errors import InvalidToolArguments


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


LOCAL_TOOLS: dict[str, tuple[type[BaseModel], Callable[..., str]]] = {
    "calculator": (CalculatorInput, calculator),
    "echo": (EchoInput, echo),
}


def run_local_tool(name: str, arguments_json: str) -> str:
    """Run the local tool `name` on its JSON arguments; raises InvalidToolArguments."""
    try:
        input_model, function = LOCAL_TOOLS[name]
    except KeyError:
        raise InvalidToolArguments(f"there is no local tool named {name!r}") from None
    return function(input_model.model_validate_json(arguments_json))

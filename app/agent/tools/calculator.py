"""The safe arithmetic evaluator behind the agent's local `calculator` tool, on `simpleeval`.

It owns turning an untrusted expression string (written by an LLM or a user) into a number, and a
number into the text the LLM reads back. `simpleeval` walks the parsed tree and never evaluates
Python code; we give it only the nodes, operators, functions and names of arithmetic, and the
limits that keep every step cheap: the input length, tree size and nesting depth are capped before
evaluation, integers are kept to about 3,000 digits, powers are sized before they are computed and
factorial's argument is capped. Anything else fails fast with a CalculatorError whose message says,
in words an LLM can act on, what is allowed.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from simpleeval import SimpleEval

MAX_EXPRESSION_LENGTH = 1000
MAX_NODES = 500
MAX_DEPTH = 200
MAX_INT_BITS = 10_000
MAX_FACTORIAL = 1000
MAX_ROUND_DIGITS = 1000
# Digits of the largest allowed integer, for messages: people think in digits, not bits.
_MAX_INT_DIGITS = int(MAX_INT_BITS * math.log10(2))
# Floats carry about 15.95 significant decimal digits; showing 15 hides binary noise
# such as 0.1 + 0.2 == 0.30000000000000004.
_FLOAT_DIGITS = 15

Number = int | float


class CalculatorError(ValueError):
    """An expression that cannot be evaluated; the message says why, for the LLM to read."""


def _too_large() -> CalculatorError:
    return CalculatorError(
        f"the result is too large: integers are limited to about {_MAX_INT_DIGITS:,} digits "
        "and decimals to about 1.8e308"
    )


def _checked(value: Any) -> Number:
    """The value itself, once it is known to be a finite real number of bounded size."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        # Python promotes (-8) ** (1/3) to a complex number; the tool only deals in reals.
        raise CalculatorError("the result is not a real number")
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise _too_large()
    elif math.isnan(value):
        raise CalculatorError("the result is not a number (NaN)")
    elif math.isinf(value):
        raise _too_large()
    return value


def _power(base: Number, exponent: Number) -> Number:
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero: 0 cannot be raised to a negative power")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        # Size the result before computing it: 9 ** 9 ** 9 would otherwise run for hours.
        bits = exponent * math.log2(abs(base))
        if bits > MAX_INT_BITS:
            raise CalculatorError(
                f"the result is too large: it would have about {bits * math.log10(2):,.0f} "
                f"digits, and integers are limited to about {_MAX_INT_DIGITS:,} digits"
            )
    return base**exponent


def _refused_operator(symbol: str, hint: str = "") -> Callable[..., Number]:
    def refuse(*_: Number) -> Number:
        raise CalculatorError(hint or f"the operator '{symbol}' is not allowed; {_ALLOWED}")

    return refuse


_OPERATORS: dict[type[ast.AST], Callable[..., Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.BitXor: _refused_operator(
        "^", "'^' is not a power operator here: use '**' instead, e.g. 2**10"
    ),
    ast.LShift: _refused_operator("<<"),
    ast.RShift: _refused_operator(">>"),
    ast.BitAnd: _refused_operator("&"),
    ast.BitOr: _refused_operator("|"),
    ast.MatMult: _refused_operator("@"),
    ast.Invert: _refused_operator("~"),
    ast.Not: _refused_operator("not"),
}


def _whole(name: str, value: Number, what: str = "argument") -> int:
    """`value` as an int, when it is a whole number."""
    if isinstance(value, float):
        if not value.is_integer():
            raise CalculatorError(f"{name}() needs a whole number as its {what}, not {value!r}")
        return int(value)
    return value


def _sqrt(x: Number) -> Number:
    if x < 0:
        raise CalculatorError("sqrt() of a negative number is not a real number")
    if isinstance(x, int):
        root = math.isqrt(x)
        if root * root == x:
            return root
        if x.bit_length() > 1000:
            # math.sqrt cannot take ints beyond the float range, yet their root fits in one.
            return float(root)
    return math.sqrt(x)


def _log(x: Number, base: Number | None = None) -> float:
    if base is not None and (base <= 0 or base == 1):
        raise CalculatorError("log()'s base must be a positive number other than 1")
    return math.log(x) if base is None else math.log(x, base)


def _factorial(n: Number) -> int:
    whole = _whole("factorial", n)
    if whole < 0:
        raise CalculatorError("factorial() is only defined for whole numbers >= 0")
    if whole > MAX_FACTORIAL:
        raise CalculatorError(f"factorial() is limited to arguments up to {MAX_FACTORIAL}")
    return math.factorial(whole)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    digits = _whole("round", ndigits, "number of digits")
    # round(5, -10**9) would build 10**(10**9) internally.
    if abs(digits) > MAX_ROUND_DIGITS:
        raise CalculatorError(
            f"round()'s number of digits must be between -{MAX_ROUND_DIGITS} and {MAX_ROUND_DIGITS}"
        )
    return round(x, digits)


# name -> (function, fewest arguments, most arguments; None means any number)
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "abs": (abs, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "cos": (math.cos, 1, 1),
    "exp": (math.exp, 1, 1),
    "factorial": (_factorial, 1, 1),
    "floor": (math.floor, 1, 1),
    "log": (_log, 1, 2),
    "log10": (math.log10, 1, 1),
    "log2": (math.log2, 1, 1),
    "max": (lambda *values: max(values), 1, None),
    "min": (lambda *values: min(values), 1, None),
    "pow": (_power, 2, 2),
    "round": (_round, 1, 2),
    "sin": (math.sin, 1, 1),
    "sqrt": (_sqrt, 1, 1),
    "tan": (math.tan, 1, 1),
}
# Functions whose domain is the positive numbers, for a message better than math's own.
_POSITIVE_ONLY = {"log", "log10", "log2"}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
NAMES = (*_FUNCTIONS, *_CONSTANTS)  # for code that recognises calculations in text
_ALLOWED = (
    "only numbers, + - * / // % ** and parentheses, the constants pi and e, and the functions "
    + ", ".join(_FUNCTIONS)
    + " are allowed"
)

# What a reader calls each construct that is not arithmetic, for the refusal.
_NODE_NAMES: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access (such as math.pi)",
    ast.Subscript: "indexing",
    ast.Compare: "comparison",
    ast.BoolOp: "'and' / 'or'",
    ast.IfExp: "a conditional expression",
    ast.Lambda: "lambda",
    ast.NamedExpr: "assignment",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.List: "a list",
    ast.Set: "a set",
    ast.Dict: "a dict",
    ast.JoinedStr: "text",
    ast.Starred: "'*' unpacking",
}


class _Arithmetic(SimpleEval):
    """simpleeval with arithmetic's nodes only, and refusals that say what is allowed."""

    nodes: dict[type[ast.AST], Callable[[Any], Any]]

    def __init__(self) -> None:
        super().__init__(operators=_OPERATORS, functions={}, names=dict(_CONSTANTS))
        allowed = (ast.Constant, ast.BinOp, ast.UnaryOp, ast.Call, ast.Name)
        self.nodes = {node: self.nodes[node] for node in allowed}
        self.nodes[ast.Constant] = self._constant
        self.nodes[ast.Name] = self._name
        self.nodes[ast.Call] = self._call

    def _eval(self, node: ast.AST) -> Number:
        if type(node) not in self.nodes:
            if isinstance(node, ast.Tuple):
                raise CalculatorError(
                    "commas are only allowed between function arguments "
                    "(write 10000, not 10,000; and one expression at a time)"
                )
            what = _NODE_NAMES.get(type(node), f"a {type(node).__name__} expression")
            raise CalculatorError(f"{what} is not allowed; {_ALLOWED}")
        try:
            return _checked(super()._eval(node))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise _too_large() from None

    @staticmethod
    def _constant(node: ast.Constant) -> Number:
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise CalculatorError(f"'{value}' is not a number; {_ALLOWED}")
        if isinstance(value, complex):
            raise CalculatorError("complex numbers are not supported")
        if isinstance(value, str | bytes):
            raise CalculatorError(f"text is not allowed; {_ALLOWED}")
        if isinstance(value, float) and math.isinf(value):
            raise CalculatorError("the number is too large: decimals are limited to about 1.8e308")
        return _checked(value)

    def _name(self, node: ast.Name) -> Number:
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in _FUNCTIONS:
            raise CalculatorError(f"'{node.id}' is a function: call it, e.g. {node.id}(16)")
        raise CalculatorError(f"unknown name '{node.id}'; {_ALLOWED}")

    def _call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name):
            raise CalculatorError(
                f"only the functions {', '.join(_FUNCTIONS)} can be called, by bare name, "
                "e.g. sqrt(16)"
            )
        name = node.func.id
        if name in _CONSTANTS:
            raise CalculatorError(f"'{name}' is a constant, not a function")
        if name not in _FUNCTIONS:
            raise CalculatorError(f"unknown function '{name}'; {_ALLOWED}")
        if node.keywords:
            raise CalculatorError(f"keyword arguments are not allowed in {name}()")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise CalculatorError(f"'*' unpacking is not allowed in {name}()")
        function, fewest, most = _FUNCTIONS[name]
        count = len(node.args)
        if count < fewest or (most is not None and count > most):
            if most is None:
                expected = f"at least {fewest}"
            else:
                expected = f"exactly {fewest}" if fewest == most else f"{fewest} to {most}"
            plural = "" if expected.endswith(" 1") else "s"
            raise CalculatorError(f"{name}() takes {expected} argument{plural} ({count} given)")
        args = [self._eval(arg) for arg in node.args]
        if name in _POSITIVE_ONLY and args[0] <= 0:
            raise CalculatorError(f"{name}() is only defined for positive numbers")
        try:
            return function(*args)
        except ValueError as err:
            if isinstance(err, CalculatorError):
                raise
            shown = ", ".join(format_result(arg) for arg in args)
            raise CalculatorError(f"{name}({shown}) is outside the function's domain") from None


def _check_size(tree: ast.Expression) -> None:
    """Reject trees too big or too deep to walk, without recursing to find out."""
    nodes = 0
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise CalculatorError(
                f"the expression is too complex: at most {MAX_NODES} numbers, operators and "
                "function calls are allowed"
            )
        if depth > MAX_DEPTH:
            raise CalculatorError(
                f"the expression is too complex: it is nested more than {MAX_DEPTH} levels deep"
            )
        stack.extend(
            (child, depth + 1)
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.expr)
        )


def _parse(expression: str) -> ast.Expression:
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be text, such as '15 * 23'")
    # Checked before any other work, so that a huge input costs nothing.
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CalculatorError(
            f"the expression is too long: {len(expression):,} characters, the limit is "
            f"{MAX_EXPRESSION_LENGTH:,}"
        )
    for human, python in (("×", "*"), ("÷", "/"), ("−", "-")):
        expression = expression.replace(human, python)
    # Joining on single spaces removes the indent and line breaks that "eval" mode rejects.
    text = " ".join(expression.split())
    if not text:
        raise CalculatorError("the expression is empty")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise CalculatorError(f"invalid expression: {err.msg}") from None
    except (RecursionError, MemoryError):
        raise CalculatorError("invalid expression: it is nested too deeply") from None
    except ValueError as err:
        # e.g. null bytes, or an integer literal beyond the int-to-str conversion limit.
        raise CalculatorError(f"invalid expression: {err}") from None
    _check_size(tree)
    return tree


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; raises CalculatorError for anything else."""
    tree = _parse(expression)
    try:
        result: Number = _Arithmetic().eval(expression, previously_parsed=tree.body)
    except RecursionError:
        raise CalculatorError(
            "the expression is too complex: it is nested too deeply to evaluate"
        ) from None
    return result


def format_result(value: int | float) -> str:
    """A number as the LLM should read it: exact ints, floats without binary noise."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:
            # Beyond Python's int-to-str digit limit: Decimal converts without that limit.
            return f"{Decimal(value):.{_FLOAT_DIGITS - 1}e}"
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.{_FLOAT_DIGITS}g}"
    # -0.0 is an artefact of rounding (e.g. -1e-300 * 1e-300), not a result worth showing.
    return "0" if text == "-0" else text

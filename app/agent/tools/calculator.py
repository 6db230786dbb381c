"""The safe arithmetic evaluator behind the agent's local `calculator` tool.

It owns turning an untrusted expression string (written by an LLM or a user) into a number, and
a number into the text the LLM reads back. The expression is parsed with `ast.parse` and the tree
is walked by hand: only numbers, + - * / // % ** (unary + and -), parentheses, a whitelist of
math functions called by bare name and the constants pi and e are accepted; nothing is ever
evaluated as Python code. Every step has bounded cost: the input length, tree size and nesting
depth are capped, integers are kept to about 3,000 digits, powers are sized before they are
computed and factorial's argument is capped, so hostile input fails fast with a CalculatorError
whose message explains the problem in words an LLM can act on.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from decimal import Decimal

_MAX_EXPRESSION_LENGTH = 1000
_MAX_NODES = 500
_MAX_DEPTH = 200
_MAX_INT_BITS = 10_000
_MAX_FACTORIAL = 1000
_MAX_ROUND_DIGITS = 1000
# Digits of the largest allowed integer, for messages: people think in digits, not bits.
_MAX_INT_DIGITS = int(_MAX_INT_BITS * math.log10(2))
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


def _checked(value: Number) -> Number:
    """The value itself, once it is known to be a finite number of bounded size."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        # Python promotes (-8) ** (1/3) to a complex number; the tool only deals in reals.
        raise CalculatorError("the result is not a real number")
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise _too_large()
    elif math.isnan(value):
        raise CalculatorError("the result is not a number (NaN)")
    elif math.isinf(value):
        raise _too_large()
    return value


def _power(base: Number, exponent: Number) -> Number:
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero: 0 cannot be raised to a negative power")
    if base < 0 and isinstance(exponent, float) and not exponent.is_integer():
        raise CalculatorError("a negative number raised to a fractional power is not a real number")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        # Size the result before computing it: 9 ** 9 ** 9 would otherwise run for hours.
        if exponent.bit_length() > 64:
            raise _too_large()
        bits = exponent * math.log2(abs(base))
        if bits > _MAX_INT_BITS:
            digits = bits * math.log10(2)
            raise CalculatorError(
                f"the result is too large: it would have about {digits:,.0f} digits, "
                f"and integers are limited to about {_MAX_INT_DIGITS:,} digits"
            )
    return _checked(base**exponent)


def _binary(op: ast.operator, left: Number, right: Number) -> Number:
    if isinstance(op, ast.Add):
        return _checked(left + right)
    if isinstance(op, ast.Sub):
        return _checked(left - right)
    if isinstance(op, ast.Mult):
        return _checked(left * right)
    if isinstance(op, ast.Div):
        return _checked(left / right)
    if isinstance(op, ast.FloorDiv):
        return _checked(left // right)
    if isinstance(op, ast.Mod):
        return _checked(left % right)
    if isinstance(op, ast.Pow):
        return _power(left, right)
    if isinstance(op, ast.BitXor):
        raise CalculatorError("'^' is not a power operator here: use '**' instead, e.g. 2**10")
    symbol = _OPERATOR_SYMBOLS.get(type(op), type(op).__name__)
    raise CalculatorError(f"the operator '{symbol}' is not allowed; {_ALLOWED}")


_OPERATOR_SYMBOLS: dict[type[ast.operator], str] = {
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.MatMult: "@",
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
    if x <= 0:
        raise CalculatorError("log() is only defined for positive numbers")
    if base is None:
        return math.log(x)
    if base <= 0 or base == 1:
        raise CalculatorError("log()'s base must be a positive number other than 1")
    return math.log(x, base)


def _log_positive(name: str, function: Callable[[Number], float]) -> Callable[[Number], float]:
    def checked(x: Number) -> float:
        if x <= 0:
            raise CalculatorError(f"{name}() is only defined for positive numbers")
        return function(x)

    return checked


def _factorial(n: Number) -> int:
    whole = _whole("factorial", n)
    if whole < 0:
        raise CalculatorError("factorial() is only defined for whole numbers >= 0")
    if whole > _MAX_FACTORIAL:
        raise CalculatorError(f"factorial() is limited to arguments up to {_MAX_FACTORIAL}")
    return math.factorial(whole)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    digits = _whole("round", ndigits, "number of digits")
    # round(5, -10**9) would build 10**(10**9) internally.
    if abs(digits) > _MAX_ROUND_DIGITS:
        raise CalculatorError(
            "round()'s number of digits must be between "
            f"-{_MAX_ROUND_DIGITS} and {_MAX_ROUND_DIGITS}"
        )
    return round(x, digits)


def _min(*values: Number) -> Number:
    return min(values)


def _max(*values: Number) -> Number:
    return max(values)


# name -> (function, fewest arguments, most arguments; None means any number)
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "abs": (abs, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "cos": (math.cos, 1, 1),
    "exp": (math.exp, 1, 1),
    "factorial": (_factorial, 1, 1),
    "floor": (math.floor, 1, 1),
    "log": (_log, 1, 2),
    "log10": (_log_positive("log10", math.log10), 1, 1),
    "log2": (_log_positive("log2", math.log2), 1, 1),
    "max": (_max, 1, None),
    "min": (_min, 1, None),
    "pow": (_power, 2, 2),
    "round": (_round, 1, 2),
    "sin": (math.sin, 1, 1),
    "sqrt": (_sqrt, 1, 1),
    "tan": (math.tan, 1, 1),
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
NAMES = (*_FUNCTIONS, *_CONSTANTS)  # for code that recognises calculations in text
_ALLOWED = (
    "only numbers, + - * / // % ** and parentheses, the constants pi and e, and the functions "
    + ", ".join(_FUNCTIONS)
    + " are allowed"
)


def _call(node: ast.Call) -> Number:
    if not isinstance(node.func, ast.Name):
        raise CalculatorError(
            f"only the functions {', '.join(_FUNCTIONS)} can be called, by bare name, e.g. sqrt(16)"
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
        elif fewest == most:
            expected = f"exactly {fewest}"
        else:
            expected = f"{fewest} to {most}"
        plural = "" if expected.endswith(" 1") else "s"
        raise CalculatorError(f"{name}() takes {expected} argument{plural} ({count} given)")
    args = [_evaluate(arg) for arg in node.args]
    try:
        return _checked(function(*args))
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise _too_large() from None
    except ValueError as err:
        if isinstance(err, CalculatorError):
            raise
        shown = ", ".join(format_result(arg) for arg in args)
        raise CalculatorError(f"{name}({shown}) is outside the function's domain") from None


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
    ast.FormattedValue: "text",
    ast.Starred: "'*' unpacking",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def _constant(value: object) -> Number:
    if isinstance(value, bool) or value is None or value is Ellipsis:
        raise CalculatorError(f"'{value}' is not a number; {_ALLOWED}")
    if isinstance(value, complex):
        raise CalculatorError("complex numbers are not supported")
    if isinstance(value, str | bytes):
        raise CalculatorError(f"text is not allowed; {_ALLOWED}")
    if not isinstance(value, int | float):
        raise CalculatorError(f"a {type(value).__name__} value is not allowed; {_ALLOWED}")
    if isinstance(value, float) and math.isinf(value):
        raise CalculatorError("the number is too large: decimals are limited to about 1.8e308")
    return _checked(value)


def _evaluate(node: ast.AST) -> Number:
    # At most two stack frames per tree level, so _MAX_DEPTH bounds the recursion.
    if isinstance(node, ast.Constant):
        return _constant(node.value)
    if isinstance(node, ast.BinOp):
        left = _evaluate(node.left)
        right = _evaluate(node.right)
        try:
            return _binary(node.op, left, right)
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise _too_large() from None
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return +operand
        symbol = "~" if isinstance(node.op, ast.Invert) else "not"
        raise CalculatorError(f"the operator '{symbol}' is not allowed; {_ALLOWED}")
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in _FUNCTIONS:
            raise CalculatorError(f"'{node.id}' is a function: call it, e.g. {node.id}(16)")
        raise CalculatorError(f"unknown name '{node.id}'; {_ALLOWED}")
    if isinstance(node, ast.Tuple):
        raise CalculatorError(
            "commas are only allowed between function arguments "
            "(write 10000, not 10,000; and one expression at a time)"
        )
    what = _NODE_NAMES.get(type(node), f"a {type(node).__name__} expression")
    raise CalculatorError(f"{what} is not allowed; {_ALLOWED}")


def _check_size(tree: ast.Expression) -> None:
    """Reject trees too big or too deep to walk, without recursing to find out."""
    nodes = 0
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > _MAX_NODES:
            raise CalculatorError(
                f"the expression is too complex: at most {_MAX_NODES} numbers, operators and "
                "function calls are allowed"
            )
        if depth > _MAX_DEPTH:
            raise CalculatorError(
                f"the expression is too complex: it is nested more than {_MAX_DEPTH} levels deep"
            )
        stack.extend(
            (child, depth + 1)
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.expr)
        )


def _normalize(expression: str) -> str:
    for human, python in (("×", "*"), ("÷", "/"), ("−", "-")):
        expression = expression.replace(human, python)
    # Joining on single spaces removes the leading indent and line breaks that ast.parse
    # would reject in "eval" mode, and never merges two tokens into one.
    return " ".join(expression.split())


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; raises CalculatorError for anything else."""
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be text, such as '15 * 23'")
    # Checked before any other work, so that a huge input costs nothing.
    if len(expression) > _MAX_EXPRESSION_LENGTH:
        raise CalculatorError(
            f"the expression is too long: {len(expression):,} characters, the limit is "
            f"{_MAX_EXPRESSION_LENGTH:,}"
        )
    text = _normalize(expression)
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
    try:
        return _evaluate(tree.body)
    except RecursionError:
        raise CalculatorError(
            "the expression is too complex: it is nested too deeply to evaluate"
        ) from None


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

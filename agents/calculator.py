"""The calculator tool: arithmetic evaluated from its syntax tree, never with `eval`.

Numbers (whole, decimal, scientific), `+ - * / // % **`, parentheses, and the functions and
constants of `FUNCTIONS`. Anything else (names, attributes, calls of other things, strings) is
refused with the reason; so are results and powers too large to be worth computing.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

from agents.errors import AgentError

MOST_CHARS = 500
MOST_EXPONENT = 10_000
MOST_DIGITS = 5_000

FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt, "log": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil,
    "min": min, "max": max, "factorial": math.factorial,
}  # fmt: skip
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}  # fmt: skip
UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}

Number = int | float


class NotArithmetic(AgentError):
    """An expression the calculator does not evaluate (the message says why)."""


def calculate(expression: str) -> Number:
    """The value of `expression`; `NotArithmetic` saying why there is none."""
    if len(expression) > MOST_CHARS:
        raise NotArithmetic(f"The expression is longer than {MOST_CHARS} characters.")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise NotArithmetic(f"{expression!r} is not an arithmetic expression.") from exc
    try:
        return _value(tree.body)
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise NotArithmetic(f"{expression!r} has no value: {exc}.") from exc


def _value(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise NotArithmetic(f"{node.value!r} is not a number.")
        return node.value
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MOST_EXPONENT:
            raise NotArithmetic(f"Powers above {MOST_EXPONENT:,} are not computed.")
        result = BINARY[type(node.op)](left, right)
        _check_size(result)
        return result
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in FUNCTIONS
        and not node.keywords
    ):
        args = [_value(a) for a in node.args]
        if node.func.id == "factorial" and (not args or args[0] > 1000):
            raise NotArithmetic("factorial is computed up to 1000 only.")
        result = FUNCTIONS[node.func.id](*args)
        _check_size(result)
        return result
    raise NotArithmetic(f"{ast.unparse(node)!r} is not arithmetic the calculator evaluates.")


def _check_size(value: object) -> None:
    if isinstance(value, int) and value.bit_length() > MOST_DIGITS * 3.33:
        raise NotArithmetic(f"The result has more than {MOST_DIGITS:,} digits.")

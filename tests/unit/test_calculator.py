"""The calculator tool: arithmetic, and everything that is not arithmetic refused."""

from __future__ import annotations

import math

import pytest

from agents.calculator import NotArithmetic, calculate


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 ** 10", 1024),
        ("7 // 2 + 7 % 2", 4),
        ("-3 + +4", 1),
        ("1.5e3 / 3", 500.0),
        ("sqrt(16) + log10(1000)", 7.0),
        ("round(pi, 3)", 3.142),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("factorial(10)", 3628800),
        ("cos(0) * e", math.e),
    ],
)
def test_arithmetic_is_evaluated(expression: str, value: float) -> None:
    assert calculate(expression) == pytest.approx(value)


@pytest.mark.parametrize(
    ("expression", "said"),
    [
        ("__import__('os').system('id')", "is not arithmetic"),
        ("open('/etc/passwd').read()", "is not arithmetic"),
        ("(1).__class__", "is not arithmetic"),
        ("x + 1", "is not arithmetic"),
        ("'a' * 3", "is not arithmetic"),
        ("[1, 2]", "is not arithmetic"),
        ("sqrt(x=4)", "is not arithmetic"),
        ("10 ** 10 ** 10", "Powers above"),
        ("9 ** 9999 * 9 ** 9999", "digits"),
        ("factorial(100000)", "up to 1000"),
        ("1 / 0", "has no value"),
        ("sqrt(-1)", "has no value"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 501, "longer than 500"),
    ],
)
def test_what_is_not_arithmetic_is_refused(expression: str, said: str) -> None:
    with pytest.raises(NotArithmetic, match=said):
        calculate(expression)

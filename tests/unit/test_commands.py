"""Parsing what people type: credits amounts, /grant and /adjust orders; the low-balance rule."""

from __future__ import annotations

import pytest

from credits.errors import InvalidRequest
from credits.ledger import parse_credits
from ui.admin import Order, Refused, parse
from ui.wallet import crossed_low


@pytest.mark.parametrize(
    ("text", "units"),
    [("12", 12_000), ("0.5", 500), ("-3", -3_000), ("+2.125", 2_125), (" 7 ", 7_000), ("0", 0)],
)
def test_credits_as_people_write_them(text: str, units: int) -> None:
    assert parse_credits(text) == units


@pytest.mark.parametrize(
    "text", ["", "abc", "1e3", "NaN", "inf", "1,000", "1.0001", "0x10", "١٢", "1.", ".5", "--1"]
)
def test_anything_else_is_not_an_amount(text: str) -> None:
    with pytest.raises(InvalidRequest, match="not a number of credits"):
        parse_credits(text)


def test_orders_read_user_amount_and_the_rest_as_the_reason() -> None:
    assert parse("grant", "ann@example.com 25 beta tester, thanks") == Order(
        "grant", "ann@example.com", 25_000, "beta tester, thanks"
    )
    assert parse("adjust", "bo -0.25 refund").units == -250


@pytest.mark.parametrize(
    ("verb", "text", "why"),
    [
        ("grant", "ann 5", "Usage"),
        ("grant", "", "Usage"),
        ("grant", "ann -5 no", "use /adjust"),
        ("grant", "ann 0 no", "must be positive"),
        ("adjust", "ann 0 no", "must be positive"),
        ("grant", "ann 10000000000000 no", "is not a number"),  # 14 digits
        ("grant", "ann 9999999999999 no", "above the largest allowed"),
        ("grant", "ann 5 " + "x" * 501, "under 500 characters"),
    ],
)
def test_bad_orders_are_refused(verb: str, text: str, why: str) -> None:
    with pytest.raises(Refused, match=why):
        parse(verb, text)


def test_the_low_balance_warning_is_for_the_crossing_only() -> None:
    low = 100_000
    assert crossed_low(100_000, 99_999, low)  # from the threshold to below it
    assert crossed_low(150_000, 20_000, low)
    assert not crossed_low(99_999, 99_000, low)  # already below: warned before
    assert not crossed_low(150_000, 100_000, low)  # at the threshold is not below it
    assert not crossed_low(0, 0, 0)  # a threshold of 0 never warns

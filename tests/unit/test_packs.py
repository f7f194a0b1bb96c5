"""The pack catalogue: what packs.toml may say, and what a bad file is told."""

from __future__ import annotations

import pytest

from credits.ledger import UNITS_PER_CREDIT
from payments.errors import UnknownPack
from payments.packs import Packs, show_money, to_major, to_minor
from settings import ROOT


def test_the_shipped_catalogue_loads_in_its_order() -> None:
    packs = Packs.load(ROOT / "packs.toml")
    assert [p.id for p in packs.all] == ["starter", "standard", "large"]
    standard = packs.find("standard")
    assert (standard.price_minor, standard.currency, standard.units) == (
        2000, "usd", 2200 * UNITS_PER_CREDIT,
    )  # fmt: skip
    assert standard.describe() == "Standard: 2,000 credits + 200 bonus for 20.00 USD"


@pytest.mark.parametrize("wanted", ["nope", "", None, 5, "STARTER", "x" * 500])
def test_a_pack_not_on_sale_is_unknown(wanted: object) -> None:
    with pytest.raises(UnknownPack):
        Packs.load(ROOT / "packs.toml").find(wanted)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"currency": "xyz", "packs": {}}, "currency 'xyz'"),
        ({"currency": "usd", "packs": {"a": {"price": "1.001", "credits": 1}}}, "more decimals"),
        ({"currency": "usd", "packs": {"a": {"price": "0", "credits": 1}}}, "must cost"),
        ({"currency": "usd", "packs": {"a": {"price": "1", "credits": 0}}}, "must cost"),
        ({"currency": "usd", "packs": {"a": {"price": "1", "credits": 1.5}}}, "must cost"),
        ({"currency": "usd", "packs": {"a": {"price": "1", "credits": 1, "bonus": -1}}}, "bonus"),
        ({"currency": "usd", "packs": {"a": {"credits": 1}}}, "'price'"),
        ({"currency": "usd", "packs": {"A B": {"price": "1", "credits": 1}}}, "not a valid pack"),
        ({"currency": "usd", "packs": {"a": {"price": "one", "credits": 1}}}, "not an amount"),
    ],
)
def test_a_bad_catalogue_is_refused_with_the_place_to_fix(data: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Packs.parse(data)


def test_money_in_minor_units_both_ways() -> None:
    assert (to_minor("20.00", "usd"), to_minor("1200", "jpy"), to_major(1999, "eur")) == (
        2000, 1200, "19.99",
    )  # fmt: skip
    assert show_money(123456, "usd") == "1,234.56 USD" and show_money(500, "jpy") == "500 JPY"

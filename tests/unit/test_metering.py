"""Prices to credits, and the ids a metered turn uses."""

from __future__ import annotations

import re
from decimal import Decimal

from agents.catalog import load_catalog
from agents.prices import Pricing
from credits.ledger import TRANSFER_ID
from credits.metering import welcome_id, work_id
from settings import ROOT
from ui.picker import choices, price_label

PRICING = Pricing(credit_usd=Decimal("0.024"))


def test_prices_convert_to_credits_without_floats() -> None:
    # $0.40 per million tokens at $0.024 per credit = 0.01666... credits per 1K tokens.
    per_1k = PRICING.credits_per_1k(Decimal("0.40"))
    assert isinstance(per_1k, Decimal)
    assert per_1k.quantize(Decimal("0.00001")) == Decimal("0.01667")


def test_a_turn_costs_whole_units_rounded_up() -> None:
    # 1,000 in at $0.20 + 1,000 out at $0.40 per million = $0.0006 = 0.025 credits = 25 units.
    assert PRICING.units(Decimal("0.20"), Decimal("0.40"), 1000, 1000) == 25
    # One token costs a fraction of a unit: it is charged as one unit, never as zero.
    assert PRICING.units(Decimal("0.20"), Decimal("0.40"), 0, 1) == 1
    assert PRICING.units(Decimal("0.20"), Decimal("0.40"), 0, 0) == 0
    marked_up = Pricing(credit_usd=Decimal("0.024"), markup=Decimal("1.5"))
    assert marked_up.units(Decimal("0.20"), Decimal("0.40"), 1000, 1000) == 38  # 37.5 rounded up


def test_work_ids_are_minted_here_and_never_repeat() -> None:
    minted = {work_id() for _ in range(1000)}
    assert len(minted) == 1000
    assert all(TRANSFER_ID.fullmatch(m) and re.fullmatch(r"turn:[0-9a-f]{32}", m) for m in minted)
    assert work_id("image").startswith("image:")


def test_transfer_ids_are_valid_for_any_identifier() -> None:
    assert welcome_id("alice@example.com") == "welcome:alice@example.com"
    odd = welcome_id("Ann Lee (GitHub)")
    assert TRANSFER_ID.fullmatch(odd) and odd != welcome_id("Ann Lee (GitLab)")


def test_the_picker_shows_each_price_per_thousand_tokens() -> None:
    catalog = load_catalog(ROOT / "models.toml", lambda _: None, "smollm2-135m")
    pricing = Pricing(Decimal("0.024"))
    local = catalog.models["smollm2-135m"]
    assert price_label(local, pricing) == (
        "SmolLM2 135M (local) · 0.0083 in / 0.017 out credits per 1K tokens"
    )
    marked_up = Pricing(Decimal("0.024"), Decimal("3"))
    assert "0.025 in / 0.05 out" in price_label(local, marked_up)
    assert list(choices(catalog, pricing).values()) == ["auto", "smollm2-135m"]

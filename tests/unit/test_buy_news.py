"""What a person is told of a payment, whichever path applied it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from payments.fulfilment import Change
from payments.orders import Order
from ui.buy import news

ORDER = Order(
    "ord_1", "ann", "stripe", "standard", "usd", 2000, 2_200_000, "paid", "cs_1", "stripe:cs_1",
    datetime.now(UTC),
)  # fmt: skip


def test_credited_and_what_went_to_what_was_owed() -> None:
    toast, said = news(Change(ORDER, "pending", granted=2_200_000))
    assert toast == "Payment received: +2,200 credits"
    assert said.endswith("**2,200 credits** were added to your balance.")
    _, said = news(Change(ORDER, "pending", granted=2_200_000, covered=400_000))
    assert "400 of them covered what you owed after a refund" in said


def test_taken_back_given_back_processing_failed_and_nothing() -> None:
    refunded = replace(ORDER, state="partially_refunded")
    assert news(Change(refunded, "paid", taken=550_000)) == (
        "550 credits taken back",
        "Your 20.00 USD payment by stripe was refunded: **550 credits** were taken back. If you "
        "had already used them, what is owed is covered by your next credits first.",
    )
    won = replace(ORDER, state="dispute_won")
    assert news(Change(won, "disputed", returned=2_200_000))[0] == "Dispute won: +2,200 credits"
    waiting = replace(ORDER, state="pending", provider_status="processing")
    assert news(Change(waiting, "pending"))[0] == "Payment processing"
    assert news(Change(replace(ORDER, state="failed"), "pending"))[0] == "Payment failed"
    assert news(Change(ORDER, "paid")) == ("", "")

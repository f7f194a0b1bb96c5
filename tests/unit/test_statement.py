"""The `/usage` statement from transfers: spending per day and model, and each transfer in words."""

from __future__ import annotations

from datetime import UTC, datetime

from credits.ledger import Kind, Transfer
from ui.statement import chart, describe, signed, spending, table, window

DAY1 = int(datetime(2026, 11, 20, 23, 59, tzinfo=UTC).timestamp() * 1e6)
DAY2 = int(datetime(2026, 11, 21, 0, 1, tzinfo=UTC).timestamp() * 1e6)
LABELS = {"a": "Model A", "b": "Model B"}
ME = "user:ann"


def charge(ts: int, model: str, units: int, n: int) -> Transfer:
    return Transfer(
        f"turn:{n}/post", Kind.POST, "usage", units, ME, "system:usage_revenue", ts,
        hold=f"turn:{n}", metadata=f'{{"kind":"chat","model":"{model}"}}',
    )  # fmt: skip


def test_spending_adds_up_per_utc_day_and_model() -> None:
    charges = [
        charge(DAY1, "a", 100, 1),
        charge(DAY1, "a", 250, 2),
        charge(DAY2, "a", 1, 3),
        charge(DAY2, "b", 7_000, 4),
    ]
    totals = spending(charges)
    assert totals == {
        ("2026-11-20", "a"): 350,
        ("2026-11-21", "a"): 1,
        ("2026-11-21", "b"): 7_000,
    }
    text = table(totals, LABELS)
    lines = text.splitlines()
    assert lines[2] == "| 2026-11-21 | Model B | 7 |"  # newest day first
    assert lines[-1] == "| **Total** | | **7.351** |"
    days = window(datetime(2026, 11, 21, tzinfo=UTC), 3)
    assert days == ["2026-11-19", "2026-11-20", "2026-11-21"]
    figure = chart(totals, days, LABELS)
    assert [bar.name for bar in figure.data] == ["Model A", "Model B"]
    assert list(figure.data[0].y) == [0.0, 0.35, 0.001]


def test_nothing_spent_says_so() -> None:
    assert table({}, LABELS) == "Nothing spent in the last 30 days."


def test_each_transfer_in_a_persons_words() -> None:
    welcome = Transfer("welcome:ann", Kind.POSTED, "welcome", 1_000_000, "system:promotions", ME, 1)
    assert (describe(welcome, LABELS), signed(welcome, ME)) == ("Welcome bonus", "+1,000")
    paid = charge(DAY1, "a", 1_234, 9)
    assert (describe(paid, LABELS), signed(paid, ME)) == ("Answer (Model A)", "−1.234")
    hold = Transfer("turn:9", Kind.PENDING, "usage", 5_000, ME, "system:usage_revenue", 1,
                    metadata='{"model":"b"}')  # fmt: skip
    assert (describe(hold, LABELS), signed(hold, ME)) == ("Held for an answer (Model B)", "5 held")
    back = Transfer("turn:9/expire", Kind.EXPIRE, "usage", 5_000, ME, "system:usage_revenue", 2)
    assert (describe(back, LABELS), signed(back, ME)) == (
        "Hold expired: nothing charged",
        "5 returned",
    )
    taken = Transfer("adjust:x", Kind.POSTED, "adjustment", 500, ME, "system:adjustments", 3,
                     metadata='{"admin":"root","reason":"refund error"}')  # fmt: skip
    assert describe(taken, LABELS) == "Correction by an administrator: refund error"
    assert signed(taken, ME) == "−0.500"

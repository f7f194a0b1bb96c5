"""The `/usage` statement from transfers: spending per day and model, and each transfer in words."""

from __future__ import annotations

from datetime import UTC, datetime

from credits.ledger import Kind, Transfer
from ui.statement import chart, describe, signed, spending, table, window

DAY1 = int(datetime(2026, 11, 20, 23, 59, tzinfo=UTC).timestamp() * 1e6)
DAY2 = int(datetime(2026, 11, 21, 0, 1, tzinfo=UTC).timestamp() * 1e6)
LABELS = {"a": "Model A", "b": "Model B"}
ME = "user:ann"


def charge(ts: int, model: str, units: int, n: int, kind: str = "chat") -> Transfer:
    return Transfer(
        f"{kind}:{n}/post", Kind.POST, "usage", units, ME, "system:usage_revenue", ts,
        hold=f"{kind}:{n}", metadata=f'{{"kind":"{kind}","model":"{model}"}}',
    )  # fmt: skip


def test_spending_adds_up_per_utc_day_kind_of_work_and_model() -> None:
    charges = [
        charge(DAY1, "a", 100, 1),
        charge(DAY1, "a", 250, 2),
        charge(DAY2, "a", 1, 3),
        charge(DAY2, "b", 7_000, 4),
        charge(DAY2, "i", 55, 5, "image"),
        charge(DAY2, "b", 20, 6, "vision"),
    ]
    totals = spending(charges)
    assert totals == {
        ("2026-11-20", "chat", "a"): 350,
        ("2026-11-21", "chat", "a"): 1,
        ("2026-11-21", "chat", "b"): 7_000,
        ("2026-11-21", "image", "i"): 55,
        ("2026-11-21", "vision", "b"): 20,
    }
    text = table(totals, {**LABELS, "i": "FLUX"})
    lines = text.splitlines()
    assert lines[2:5] == [  # newest day first
        "| 2026-11-21 | Vision | Model B | 0.020 |",
        "| 2026-11-21 | Images | FLUX | 0.055 |",
        "| 2026-11-21 | Chat | Model B | 7 |",
    ]
    assert lines[-1] == "| **Total** | | | **7.426** |"
    days = window(datetime(2026, 11, 21, tzinfo=UTC), 3)
    assert days == ["2026-11-19", "2026-11-20", "2026-11-21"]
    figure = chart(totals, days, {**LABELS, "i": "FLUX"})
    assert [bar.name for bar in figure.data] == [
        "Chat · Model A", "Chat · Model B", "Images · FLUX", "Vision · Model B",
    ]  # fmt: skip
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
    image = charge(DAY1, "i", 55, 10, "image")
    assert describe(image, {"i": "FLUX"}) == "Images (FLUX)"
    seen = charge(DAY1, "b", 20, 11, "vision")
    assert describe(seen, LABELS) == "Answer about an image (Model B)"
    taken = Transfer("adjust:x", Kind.POSTED, "adjustment", 500, ME, "system:adjustments", 3,
                     metadata='{"admin":"root","reason":"refund error"}')  # fmt: skip
    assert describe(taken, LABELS) == "Correction by an administrator: refund error"
    assert signed(taken, ME) == "−0.500"


def test_a_tasks_model_and_tool_calls_are_their_own_kind_of_work() -> None:
    labels = {**LABELS, "run_python": "Python in the sandbox"}
    charges = [charge(DAY2, "a", 300, 1, "task"), charge(DAY2, "run_python", 9, 2, "task")]
    totals = spending([*charges, charge(DAY2, "a", 100, 3)])
    assert table(totals, labels).splitlines()[2:5] == [
        "| 2026-11-21 | Tasks | Python in the sandbox | 0.009 |",
        "| 2026-11-21 | Tasks | Model A | 0.300 |",
        "| 2026-11-21 | Chat | Model A | 0.100 |",
    ]
    assert describe(charges[1], labels) == "Task step (Python in the sandbox)"
    held = Transfer("task:r:1.1", Kind.PENDING, "usage", 20, ME, "system:usage_revenue", 1,
                    metadata='{"kind":"task","model":"a"}')  # fmt: skip
    assert describe(held, labels) == "Held for a task step (Model A)"

"""Credits taken back (refunds, lost disputes): what is there is posted back, what was spent is
owed, nothing may be spent while owing, and the next credits cover it first. Checked against
balances, the log and `verify` (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from credits.errors import IdempotencyConflict, OwesCredits
from credits.ledger import Balance, System
from credits.store import Ledger
from credits.verify import verify
from tests.credits.test_tampering import attack

CREDIT = 1000  # units


async def assert_verified(ledger: Ledger) -> None:
    report = await verify(ledger)
    assert report.ok, report.problems


async def test_a_refund_of_unspent_credits_takes_them_back(ledger: Ledger) -> None:
    await ledger.grant("ann", 50 * CREDIT, "stripe:cs_1", code="purchase")
    taken = await ledger.claw_back("ann", 20 * CREDIT, "refund:stripe:cs_1:2000", "refund")
    assert (taken.amount, taken.debit, taken.credit) == (
        20 * CREDIT,
        "user:ann",
        "system:clawbacks",
    )
    assert taken.meta == {"asked": 20 * CREDIT, "owed": 0}
    assert await ledger.balance("ann") == Balance(30 * CREDIT, 0, 30 * CREDIT, 0)
    await assert_verified(ledger)


async def test_a_refund_after_spending_leaves_credits_owed_until_a_top_up_covers_them(
    ledger: Ledger,
) -> None:
    """Bo bought 50, spent 45 and was refunded in full: 5 are taken back and 45 owed. Nothing may
    be spent now, not even free work. His next purchase of 100 covers the 45 first (a transfer of
    its own), leaving 55 to spend."""
    await ledger.grant("bo", 50 * CREDIT, "stripe:cs_2", code="purchase")
    await ledger.reserve("bo", 45 * CREDIT, "turn:1", 60)
    await ledger.settle("turn:1", 45 * CREDIT)

    taken = await ledger.claw_back("bo", 50 * CREDIT, "refund:stripe:cs_2:500", "refund")
    assert taken.amount == 5 * CREDIT and taken.meta == {"asked": 50 * CREDIT, "owed": 45 * CREDIT}
    assert await ledger.balance("bo") == Balance(0, 0, 0, owed=45 * CREDIT)
    for amount in (CREDIT, 0):
        with pytest.raises(OwesCredits) as refused:
            await ledger.reserve("bo", amount, f"turn:owing:{amount}", 60)
        assert refused.value.owed == 45 * CREDIT

    bought = await ledger.grant("bo", 100 * CREDIT, "paypal:ORDER9", code="purchase")
    assert bought.amount == 100 * CREDIT
    assert await ledger.balance("bo") == Balance(55 * CREDIT, 0, 55 * CREDIT, 0)
    cover = await ledger.transfer(f"owed:{bought.pk}")
    assert cover is not None
    assert (cover.amount, cover.code, cover.credit) == (45 * CREDIT, "owed", System.CLAWBACKS)
    assert cover.meta == {"covers": "paypal:ORDER9", "owed_before": 45 * CREDIT}
    await ledger.reserve("bo", CREDIT, "turn:2", 60)  # spending again
    await assert_verified(ledger)


async def test_a_small_grant_covers_part_of_what_is_owed(ledger: Ledger) -> None:
    await ledger.grant("cy", 10 * CREDIT, "stripe:cs_3", code="purchase")
    await ledger.reserve("cy", 10 * CREDIT, "turn:1", 60)
    await ledger.settle("turn:1", 10 * CREDIT)
    await ledger.claw_back("cy", 10 * CREDIT, "dispute:stripe:cs_3", "dispute")
    await ledger.grant("cy", 4 * CREDIT, "grant:admin:1")
    await ledger.adjust("cy", 2 * CREDIT, "goodwill", "admin", "adjust:1")
    assert await ledger.balance("cy") == Balance(0, 0, 0, owed=4 * CREDIT)
    await ledger.grant("cy", 10 * CREDIT, "grant:admin:2")
    assert await ledger.balance("cy") == Balance(6 * CREDIT, 0, 6 * CREDIT, 0)
    await assert_verified(ledger)


async def test_a_claw_back_repeated_takes_once_and_a_different_one_under_its_id_is_refused(
    ledger: Ledger,
) -> None:
    await ledger.grant("di", 30 * CREDIT, "stripe:cs_4", code="purchase")
    first = await ledger.claw_back("di", 40 * CREDIT, "refund:x", "refund", {"order": "o1"})
    again = await ledger.claw_back("di", 40 * CREDIT, "refund:x", "refund", {"order": "o1"})
    assert again == first
    assert await ledger.balance("di") == Balance(0, 0, 0, owed=10 * CREDIT)
    for amount, meta in ((41 * CREDIT, {"order": "o1"}), (40 * CREDIT, {"order": "o2"})):
        with pytest.raises(IdempotencyConflict):
            await ledger.claw_back("di", amount, "refund:x", "refund", meta)
    assert await ledger.balance("di") == Balance(0, 0, 0, owed=10 * CREDIT)
    await assert_verified(ledger)


async def test_claw_backs_raced_take_once(ledger: Ledger) -> None:
    """The same refund delivered 20 times at once: one transfer, owed once."""
    await ledger.grant("ed", 5 * CREDIT, "stripe:cs_5", code="purchase")
    done = await asyncio.gather(
        *[ledger.claw_back("ed", 8 * CREDIT, "refund:race", "refund") for _ in range(20)]
    )
    assert len({t.pk for t in done}) == 1
    assert await ledger.balance("ed") == Balance(0, 0, 0, owed=3 * CREDIT)
    await assert_verified(ledger)


async def test_credits_freed_while_owing_are_not_spent(ledger: Ledger) -> None:
    """Fay's running turn held 6 when a refund took the other 4 and left 6 owed; the turn then
    used 1. The 5 it gave back cannot be spent while she owes; her next grant covers the 6 from
    them and it."""
    await ledger.grant("fay", 10 * CREDIT, "stripe:cs_6", code="purchase")
    await ledger.reserve("fay", 6 * CREDIT, "turn:1", 60)
    await ledger.claw_back("fay", 10 * CREDIT, "refund:fay", "refund")
    assert await ledger.balance("fay") == Balance(0, 6 * CREDIT, 6 * CREDIT, owed=6 * CREDIT)
    await ledger.settle("turn:1", CREDIT)
    assert await ledger.balance("fay") == Balance(5 * CREDIT, 0, 5 * CREDIT, owed=6 * CREDIT)
    with pytest.raises(OwesCredits):
        await ledger.reserve("fay", CREDIT, "turn:2", 60)
    await ledger.grant("fay", 2 * CREDIT, "grant:fay")
    assert await ledger.balance("fay") == Balance(CREDIT, 0, CREDIT, 0)
    await assert_verified(ledger)


async def test_verify_notices_an_owed_counter_changed_behind_the_ledger(ledger: Ledger) -> None:
    await ledger.grant("gil", CREDIT, "stripe:cs_7", code="purchase")
    await ledger.claw_back("gil", 3 * CREDIT, "refund:gil", "refund")
    await assert_verified(ledger)
    attack(ledger, "UPDATE ledger_accounts SET owed = 0 WHERE name = 'user:gil'")
    report = await verify(ledger)
    assert not report.ok
    assert any("user:gil: owes 0 units" in p for p in report.problems)

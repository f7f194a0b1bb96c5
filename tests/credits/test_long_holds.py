"""Holds of long work (a task's budget), renewed as it goes: each part paid for, the next held, all
or nothing; checked against balances and `verify` (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from credits.errors import HoldExpired, HoldResolved, InsufficientCredits, UnknownHold
from credits.ledger import Balance, Kind
from credits.store import Ledger
from credits.verify import verify
from tests.credits.conftest import Clock
from tests.credits.test_cancellation import held_soon

CREDIT = 1000  # units


async def assert_verified(ledger: Ledger) -> None:
    report = await verify(ledger)
    assert report.ok, report.problems


async def test_a_long_task_pays_for_each_part_and_holds_the_next(ledger: Ledger) -> None:
    """Kim's task holds 4 credits, uses 1 and asks for 6 more for its next steps, then uses 2
    and holds 2, and finishes having used 1 of those: she paid 4, and was never held more than
    her balance allowed."""
    await ledger.grant("kim", 10 * CREDIT, "welcome:kim", code="welcome")
    await ledger.reserve("kim", 4 * CREDIT, "task:1/0", 60, metadata={"kind": "task"})

    paid, held = await ledger.renew("task:1/0", 1 * CREDIT, "task:1/1", 6 * CREDIT, 60)
    assert (paid.kind, paid.amount, paid.hold) == (Kind.POST, CREDIT, "task:1/0")
    assert held.created and held.transfer.amount == 6 * CREDIT
    assert held.transfer.meta == {"kind": "task"}  # the budget's metadata goes on
    assert await ledger.balance("kim") == Balance(available=3000, held=6000, posted=9000)

    await ledger.renew("task:1/1", 2 * CREDIT, "task:1/2", 2 * CREDIT, 60, {"step": 3})
    assert await ledger.balance("kim") == Balance(available=5000, held=2000, posted=7000)
    await ledger.settle("task:1/2", 1 * CREDIT)
    assert await ledger.balance("kim") == Balance(available=6000, held=0, posted=6000)
    assert sum(t.amount for t in await ledger.charges("kim")) == 4 * CREDIT
    await assert_verified(ledger)


async def test_a_renewal_the_balance_cannot_cover_changes_nothing(ledger: Ledger) -> None:
    """Lou's task used 1 of its 3 held credits and asks to hold 9 more, but only 8 would be
    free: refused whole, the first hold still holds its 3, and nothing was written. Asking for
    what fits then works, and its first part is charged once."""
    await ledger.grant("lou", 10 * CREDIT, "welcome:lou", code="welcome")
    await ledger.reserve("lou", 3 * CREDIT, "task:2/0", 60)
    before = await ledger.history("lou")
    with pytest.raises(InsufficientCredits):
        await ledger.renew("task:2/0", 1 * CREDIT, "task:2/1", 10 * CREDIT, 60)
    assert await ledger.balance("lou") == Balance(available=7000, held=3000, posted=10000)
    assert await ledger.history("lou") == before
    assert await ledger.transfer("task:2/1") is None

    _, held = await ledger.renew("task:2/0", 1 * CREDIT, "task:2/1", 9 * CREDIT, 60)
    assert held.created
    assert await ledger.balance("lou") == Balance(available=0, held=9000, posted=9000)
    await assert_verified(ledger)


async def test_a_renewal_repeated_gives_the_same_transfers(ledger: Ledger) -> None:
    """A worker that crashed after renewing renews again under the same ids: the same
    transfers, the hold not created twice, nothing charged twice. Releasing is renewing with
    nothing used."""
    await ledger.grant("max", 10 * CREDIT, "welcome:max", code="welcome")
    await ledger.reserve("max", 2 * CREDIT, "task:3/0", 60)
    first = await ledger.renew("task:3/0", 0, "task:3/1", 5 * CREDIT, 60)
    again = await ledger.renew("task:3/0", 0, "task:3/1", 5 * CREDIT, 60)
    assert first[0] == again[0] and first[0].kind is Kind.VOID
    assert first[1].created and not again[1].created
    assert first[1].transfer == again[1].transfer
    assert await ledger.balance("max") == Balance(available=5000, held=5000, posted=10000)
    await assert_verified(ledger)


async def test_a_hold_that_is_gone_cannot_be_renewed(ledger: Ledger, clock: Clock) -> None:
    """An expired, settled or unknown hold is not renewed, and no new hold appears."""
    await ledger.grant("ned", 10 * CREDIT, "welcome:ned", code="welcome")
    await ledger.reserve("ned", 2 * CREDIT, "task:4/0", 60)
    clock.advance(61)
    with pytest.raises(HoldExpired):
        await ledger.renew("task:4/0", CREDIT, "task:4/1", CREDIT, 60)
    await ledger.reserve("ned", 2 * CREDIT, "task:5/0", 60)
    await ledger.settle("task:5/0", CREDIT)
    with pytest.raises(HoldResolved):
        await ledger.renew("task:5/0", CREDIT, "task:5/1", CREDIT, 60)
    with pytest.raises(UnknownHold):
        await ledger.renew("task:nope", CREDIT, "task:6/1", CREDIT, 60)
    assert [await ledger.transfer(t) for t in ("task:4/1", "task:5/1", "task:6/1")] == [None] * 3
    assert await ledger.balance("ned") == Balance(available=9000, held=0, posted=9000)
    await assert_verified(ledger)


async def test_two_workers_renewing_one_hold_at_once(ledger: Ledger) -> None:
    """Two workers that both think they own a task renew its hold at the same moment: one
    renewal happens, the other is refused, and only one new hold exists."""
    await ledger.grant("oli", 10 * CREDIT, "welcome:oli", code="welcome")
    await ledger.reserve("oli", 2 * CREDIT, "task:7/0", 60)
    outcomes = await asyncio.gather(
        ledger.renew("task:7/0", CREDIT, "task:7/a", 3 * CREDIT, 60),
        ledger.renew("task:7/0", CREDIT, "task:7/b", 3 * CREDIT, 60),
        return_exceptions=True,
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(won) == 1 and all(isinstance(o, HoldResolved) for o in outcomes if o not in won)
    assert await ledger.balance("oli") == Balance(available=6000, held=3000, posted=9000)
    await assert_verified(ledger)


async def test_a_renewal_whose_caller_is_cancelled_leaves_no_hold(ledger: Ledger) -> None:
    """The task is cancelled while its hold is being renewed: what it used is charged, and the
    new hold is released at once rather than after its timeout."""
    await ledger.grant("pia", 10 * CREDIT, "welcome:pia", code="welcome")
    await ledger.reserve("pia", 2 * CREDIT, "task:8/0", 600)
    renewing = asyncio.ensure_future(ledger.renew("task:8/0", CREDIT, "task:8/1", 5 * CREDIT, 600))
    await asyncio.sleep(0)  # queued, not yet written
    renewing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await renewing
    # An operation once asked for runs to its end: the renewal lands, then its hold is released.
    assert await held_soon(ledger, "pia", 0) == Balance(available=9000, held=0, posted=9000)
    released = await ledger.transfer("task:8/1/void")
    assert released is not None and released.meta["released"] == "caller cancelled"
    await assert_verified(ledger)

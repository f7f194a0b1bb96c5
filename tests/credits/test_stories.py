"""Credit stories, each checked against balances, the log and `verify` (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest

from credits import metering
from credits.errors import (
    HoldExpired,
    HoldNotCreated,
    HoldResolved,
    IdempotencyConflict,
    InsufficientCredits,
    SettleExceedsHold,
)
from credits.ledger import Balance, Kind
from credits.store import Ledger
from credits.verify import verify
from tests.credits.conftest import Clock

CREDIT = 1000  # units


async def assert_verified(ledger: Ledger) -> None:
    report = await verify(ledger)
    assert report.ok, report.problems


async def test_the_welcome_bonus_is_paid_once(ledger: Ledger) -> None:
    first = await ledger.grant("ann", 1000 * CREDIT, "welcome:ann", code="welcome")
    again = await ledger.grant("ann", 1000 * CREDIT, "welcome:ann", code="welcome")
    assert again == first
    assert await ledger.balance("ann") == Balance(available=1_000_000, held=0, posted=1_000_000)
    with pytest.raises(IdempotencyConflict):
        await ledger.grant("ann", 2000 * CREDIT, "welcome:ann", code="welcome")
    assert (await ledger.balance("ann")).posted == 1_000_000
    history = await ledger.history("ann")
    assert [(t.transfer_id, t.kind, t.amount) for t in history] == [
        ("welcome:ann", Kind.POSTED, 1_000_000)
    ]
    await assert_verified(ledger)


async def test_a_hold_settled_for_less_returns_the_rest(ledger: Ledger) -> None:
    await ledger.grant("bob", 10 * CREDIT, "welcome:bob", code="welcome")
    held = await ledger.reserve("bob", 4 * CREDIT, "turn:m1", timeout_s=60, metadata={"model": "x"})
    assert held.created and held.transfer.kind is Kind.PENDING
    assert await ledger.balance("bob") == Balance(available=6000, held=4000, posted=10000)
    settled = await ledger.settle("turn:m1", 1500, metadata={"tokens": 42})
    assert (settled.kind, settled.amount, settled.hold) == (Kind.POST, 1500, "turn:m1")
    assert await ledger.balance("bob") == Balance(available=8500, held=0, posted=8500)
    assert await ledger.settle("turn:m1", 1500, metadata={"tokens": 42}) == settled  # a retry
    with pytest.raises(IdempotencyConflict):
        await ledger.settle("turn:m1", 1400)
    with pytest.raises(HoldResolved, match="already settled"):
        await ledger.release("turn:m1")
    assert await ledger.usage("bob", by="model") == {"x": 1500}
    await assert_verified(ledger)


async def test_a_resolution_whose_id_another_transfer_took_changes_nothing(ledger: Ledger) -> None:
    """The id a settle would record (`<hold>/post`) was taken by a grant: the settle is refused,
    and the hold stays open as it was (the claim on it is undone), ready to be released."""
    await ledger.grant("cat", 10 * CREDIT, "turn:c1/post", code="welcome")
    await ledger.reserve("cat", 4 * CREDIT, "turn:c1", timeout_s=60)
    with pytest.raises(IdempotencyConflict):
        await ledger.settle("turn:c1", 1000)
    assert await ledger.balance("cat") == Balance(available=6000, held=4000, posted=10000)
    assert (await ledger.release("turn:c1")).kind is Kind.VOID
    assert await ledger.balance("cat") == Balance(available=10000, held=0, posted=10000)
    assert (await ledger.checkpoint()).size == 3  # the grant, the hold, its release: nothing else
    await assert_verified(ledger)


async def test_a_released_hold_charges_nothing(ledger: Ledger) -> None:
    await ledger.grant("cy", 5 * CREDIT, "welcome:cy", code="welcome")
    await ledger.reserve("cy", 5 * CREDIT, "turn:m2", timeout_s=60)
    with pytest.raises(InsufficientCredits) as info:
        await ledger.reserve("cy", 1, "turn:m3", timeout_s=60)
    assert (info.value.available, info.value.needed) == (0, 1)
    await ledger.release("turn:m2")
    assert await ledger.balance("cy") == Balance(available=5000, held=0, posted=5000)
    with pytest.raises(HoldResolved, match="already released"):
        await ledger.settle("turn:m2", 10)
    # The failed reserve recorded nothing, so its id is free for a retry after the release.
    assert (await ledger.reserve("cy", 1, "turn:m3", timeout_s=60)).transfer.amount == 1
    await assert_verified(ledger)


async def test_a_hold_that_expires_gives_the_credits_back(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("dee", 3 * CREDIT, "welcome:dee", code="welcome")
    await ledger.reserve("dee", 2 * CREDIT, "turn:m4", timeout_s=30)
    clock.advance(29)
    assert await ledger.expire_holds() == 0
    clock.advance(2)
    with pytest.raises(HoldExpired):
        await ledger.settle("turn:m4", 100)
    assert await ledger.expire_holds() == 1
    assert await ledger.balance("dee") == Balance(available=3000, held=0, posted=3000)
    with pytest.raises(HoldExpired):
        await ledger.settle("turn:m4", 100)
    [expiry, *_] = await ledger.history("dee")
    assert (expiry.kind, expiry.hold, expiry.amount) == (Kind.EXPIRE, "turn:m4", 2000)
    await assert_verified(ledger)


async def test_a_reserve_releases_the_users_stale_holds_first(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("eve", 1 * CREDIT, "welcome:eve", code="welcome")
    await ledger.reserve("eve", 1 * CREDIT, "turn:crashed", timeout_s=10)  # the process died
    clock.advance(11)
    await ledger.reserve("eve", 1 * CREDIT, "turn:next", timeout_s=10)
    assert await ledger.balance("eve") == Balance(available=0, held=1000, posted=1000)
    await assert_verified(ledger)


async def test_an_adjustment_either_way_never_below_zero(ledger: Ledger) -> None:
    await ledger.grant("fay", 2 * CREDIT, "welcome:fay", code="welcome")
    await ledger.adjust("fay", 500, "refund for outage", "admin@x", "adj:1")
    await ledger.adjust("fay", -1500, "duplicate grant", "admin@x", "adj:2")
    assert (await ledger.balance("fay")).available == 1000
    with pytest.raises(InsufficientCredits):
        await ledger.adjust("fay", -1001, "too much", "admin@x", "adj:3")
    [last, *_] = await ledger.history("fay")
    assert last.meta == {"admin": "admin@x", "reason": "duplicate grant"}
    assert last.debit == "user:fay" and last.credit == "system:adjustments"
    await assert_verified(ledger)


async def test_a_turn_on_a_free_model_is_recorded_at_zero(ledger: Ledger) -> None:
    """Ivy chats with a free local Ollama model: nothing is held or charged, and the turn still
    shows in her usage, at zero. A turn that delivered nothing is released, as any other."""
    await ledger.grant("ivy", 5 * CREDIT, "welcome:ivy", code="welcome")
    free = metering.Work("chat", 0, {"model": "ollama"})
    async with metering.running(await metering.hold(ledger, "ivy", free, 60)) as meter:
        meter.use(0, {"tokens_in": 12, "tokens_out": 30})
    async with metering.running(await metering.hold(ledger, "ivy", free, 60)) as failed:
        pass
    await metering.finish_settling()
    assert await ledger.balance("ivy") == Balance(available=5000, held=0, posted=5000)
    [charge] = await ledger.charges("ivy")
    assert (charge.kind, charge.amount, charge.hold) == (Kind.POST, 0, meter.transfer_id)
    assert await ledger.usage("ivy", by="model") == {"ollama": 0}
    released = await ledger.transfer(f"{failed.transfer_id}/void")
    assert released is not None and released.amount == 0
    await assert_verified(ledger)


async def test_work_that_ends_early_is_settled_once_while_the_page_is_told(
    ledger: Ledger,
) -> None:
    """Kim's image is in: its settle starts before the page is told, and the block's end, Stop
    pressed while the page is told, and a second ask all wait for that one settle. Nothing more
    can be used once it started."""
    await ledger.grant("kim", 5 * CREDIT, "welcome:kim", code="welcome")
    told = []

    async def after(meter: metering.Meter) -> None:
        told.append(await ledger.balance("kim"))

    work = metering.Work("image", 2 * CREDIT, {"model": "flux"})
    page = asyncio.Event()

    async def make() -> None:
        async with metering.running(await metering.hold(ledger, "kim", work, 60), after) as meter:
            meter.use(CREDIT, {"images": 1})
            settling = meter.settle_soon()
            assert meter.settle_soon() is settling
            with pytest.raises(RuntimeError, match="being settled"):
                meter.use(2 * CREDIT)
            await settling  # settled while the page is still being told...
            assert await ledger.balance("kim") == Balance(4000, 0, 4000)
            page.set()
            await asyncio.sleep(60)  # ...and the person presses Stop meanwhile

    making = asyncio.create_task(make())
    await page.wait()
    making.cancel()
    with pytest.raises(asyncio.CancelledError):
        await making
    await metering.finish_settling()
    assert told == [Balance(available=4000, held=0, posted=4000)]  # the badge, once
    [charge] = await ledger.charges("kim")
    assert (charge.kind, charge.amount) == (Kind.POST, CREDIT)
    await assert_verified(ledger)


async def test_work_runs_only_on_a_hold_its_own_reserve_created(ledger: Ledger) -> None:
    """Should a hold already exist under a piece of work's id (a replay), its reserve says it did
    not create it, and the work is refused: it could otherwise run on someone's settled hold."""
    await ledger.grant("jon", 5 * CREDIT, "welcome:jon", code="welcome")
    meter = metering.Meter(ledger, "jon", metering.Work("chat", CREDIT, {"model": "m"}), 60)
    metadata = {"model": "m", "kind": "chat"}
    first = await ledger.reserve("jon", CREDIT, meter.transfer_id, 60, metadata=metadata)
    assert first.created
    with pytest.raises(HoldNotCreated):
        await meter.hold()
    assert not meter.holding
    assert await ledger.balance("jon") == Balance(available=4000, held=1000, posted=5000)


async def test_settling_above_the_hold_is_refused(ledger: Ledger) -> None:
    await ledger.grant("gus", 2 * CREDIT, "welcome:gus", code="welcome")
    await ledger.reserve("gus", 1 * CREDIT, "turn:m5", timeout_s=60)
    with pytest.raises(SettleExceedsHold):
        await ledger.settle("turn:m5", 1001)
    assert await ledger.balance("gus") == Balance(available=1000, held=1000, posted=2000)
    await ledger.settle("turn:m5", 1000)
    await assert_verified(ledger)


async def test_history_pages_and_filters(ledger: Ledger, clock: Clock) -> None:
    await ledger.grant("hal", 100 * CREDIT, "welcome:hal", code="welcome")
    for i in range(7):
        clock.advance(3600)
        await ledger.reserve("hal", CREDIT, f"turn:h{i}", timeout_s=60, metadata={"model": "m"})
        await ledger.settle(f"turn:h{i}", 10 * (i + 1))
    page1 = await ledger.history("hal", limit=5)
    assert len(page1) == 5
    assert page1[0].transfer_id == "turn:h6/post"
    welcome = await ledger.history("hal", codes=["welcome"])
    assert [t.transfer_id for t in welcome] == ["welcome:hal"]
    everything = await ledger.history("hal", limit=500)
    assert len(everything) == 15
    assert await ledger.usage("hal", by="day") == {"2027-01-15": 280}


async def test_a_disabled_account_has_its_holds_released_and_keeps_its_credits(
    ledger: Ledger,
) -> None:
    """Kim is disabled while two answers are running: both holds go back at once (the answers
    are charged nothing), her credits stay, and a settle arriving afterwards is refused."""
    await ledger.grant("kim", 10 * CREDIT, "welcome:kim", code="welcome")
    await ledger.reserve("kim", 2 * CREDIT, "turn:k1", timeout_s=600, metadata={"model": "m"})
    await ledger.reserve("kim", 3 * CREDIT, "turn:k2", timeout_s=600)
    assert await ledger.release_all("kim", "account disabled") == 2
    assert await ledger.balance("kim") == Balance(available=10_000, held=0, posted=10_000)
    with pytest.raises(HoldResolved):
        await ledger.settle("turn:k1", 500)
    released = await ledger.transfer("turn:k1/void")
    assert released is not None and released.meta == {"model": "m", "released": "account disabled"}
    assert await ledger.release_all("kim", "account disabled") == 0
    assert await ledger.release_all("nobody", "account disabled") == 0
    await assert_verified(ledger)

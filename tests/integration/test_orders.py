"""Order stories (SQLite and PostgreSQL): a pack bought, fulfilled from several places at once,
completed after a crash, and orders that cannot be paid for; checked against the ledger."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.ledger import UNITS_PER_CREDIT, Balance
from credits.store import Ledger
from payments import orders
from payments.errors import NotFulfillable, UnknownOrder

UNITS = 200 * UNITS_PER_CREDIT  # the starter pack: 200 credits for $5.00


async def new_order(engine: AsyncEngine, account: str, provider: str = "stripe") -> orders.Order:
    return await orders.create(engine, account, provider, "starter", "usd", 500, UNITS)


async def paid_order(engine: AsyncEngine, account: str, ref: str) -> orders.Order:
    """An order whose checkout started at Stripe as `ref`."""
    order = await new_order(engine, account)
    assert await orders.started(engine, order.id, ref)
    return order


async def test_a_person_buys_a_pack_and_is_credited_once(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    order = await paid_order(engine, "ann@example.com", "cs_test_ann")
    assert (await orders.get(engine, order.id)).state == "pending"
    assert await orders.fulfil(engine, ledger, order.id)
    assert not await orders.fulfil(engine, ledger, order.id)  # the webhook, again
    done = await orders.get(engine, order.id)
    assert (done.state, done.transfer_id) == ("paid", "stripe:cs_test_ann")
    assert await ledger.balance("ann@example.com") == Balance(200_000, 0, 200_000)
    [grant] = await ledger.history("ann@example.com")
    assert (grant.transfer_id, grant.debit, grant.code) == (
        "stripe:cs_test_ann",
        "system:stripe_clearing",
        "purchase",
    )
    assert grant.meta == {"order": order.id, "pack": "starter"}


async def test_fifty_fulfilments_at_once_grant_once(engine: AsyncEngine, ledger: Ledger) -> None:
    """The webhook, the return page and reconciliation all fulfil one order at the same moment:
    one grant, and exactly one of them is told it paid the order."""
    order = await paid_order(engine, "bob@example.com", "cs_test_bob")
    outcomes = await asyncio.gather(*(orders.fulfil(engine, ledger, order.id) for _ in range(50)))
    assert outcomes.count(True) == 1
    assert len(await ledger.history("bob@example.com")) == 1
    assert (await ledger.balance("bob@example.com")).available == 200_000


async def test_a_crash_between_the_grant_and_the_order_is_completed_once(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    """The process died after the ledger granted and before the order moved: the next delivery
    finds the grant done (a repeat), moves the order, and nothing is granted twice."""
    order = await paid_order(engine, "cy@example.com", "cs_test_cy")
    pending = await orders.get(engine, order.id)
    await ledger.grant(
        "cy@example.com", UNITS, pending.grant_id, code="purchase",
        metadata={"order": order.id, "pack": "starter"}, source=orders.SOURCE["stripe"],
    )  # fmt: skip
    assert (await orders.get(engine, order.id)).state == "pending"
    assert await orders.fulfil(engine, ledger, order.id)
    assert len(await ledger.history("cy@example.com")) == 1
    assert (await ledger.balance("cy@example.com")).available == 200_000


async def test_orders_that_cannot_be_paid_for(engine: AsyncEngine, ledger: Ledger) -> None:
    """No checkout yet, or failed: refused, nothing granted. Expired at our side but paid at the
    provider: the provider decides, and it is paid."""
    fresh = await new_order(engine, "dee@example.com", "paypal")
    with pytest.raises(NotFulfillable, match="no checkout"):
        await orders.fulfil(engine, ledger, fresh.id)
    failed = await paid_order(engine, "dee@example.com", "cs_test_failed")
    assert await orders.move(engine, failed.id, "failed")
    with pytest.raises(NotFulfillable, match="failed"):
        await orders.fulfil(engine, ledger, failed.id)
    assert await ledger.history("dee@example.com") == []
    late = await paid_order(engine, "dee@example.com", "cs_test_late")
    assert await orders.move(engine, late.id, "expired")
    assert await orders.fulfil(engine, ledger, late.id)
    with pytest.raises(UnknownOrder):
        await orders.fulfil(engine, ledger, "ord_nope")


async def test_the_state_machine_moves_only_forward(engine: AsyncEngine, ledger: Ledger) -> None:
    order = await paid_order(engine, "eve@example.com", "cs_test_eve")
    assert not await orders.started(engine, order.id, "cs_test_other")  # started already
    assert await orders.fulfil(engine, ledger, order.id)
    assert not await orders.move(engine, order.id, "pending")
    assert not await orders.move(engine, order.id, "expired")
    assert not await orders.move(engine, order.id, "dispute_won")  # no dispute yet
    assert await orders.move(engine, order.id, "disputed")
    assert await orders.move(engine, order.id, "dispute_won")
    assert await orders.move(engine, order.id, "partially_refunded")
    assert await orders.move(engine, order.id, "refunded")
    assert not await orders.move(engine, order.id, "paid")
    assert (await orders.get(engine, order.id)).state == "refunded"
    with pytest.raises(ValueError, match="No order moves"):
        await orders.move(engine, order.id, "created")


async def test_another_persons_order_and_a_checkout_used_twice(engine: AsyncEngine) -> None:
    order = await paid_order(engine, "fay@example.com", "cs_test_fay")
    with pytest.raises(UnknownOrder):
        await orders.get(engine, order.id, account="mallory@example.com")
    assert (await orders.get(engine, order.id, account="fay@example.com")).id == order.id
    other = await new_order(engine, "mallory@example.com")
    with pytest.raises(IntegrityError):  # one order per checkout: the database says so
        await orders.started(engine, other.id, "cs_test_fay")
    assert (await orders.get(engine, other.id)).state == "created"

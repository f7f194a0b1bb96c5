"""Order stories (SQLite and PostgreSQL), whatever the provider: a pack bought, fulfilled from
several places at once, completed after a crash, and orders that cannot be paid for; checked
against the ledger. The provider's word is a `Payment` record here (the adapters have their own
tests against loopback Stripe and PayPal)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.ledger import UNITS_PER_CREDIT, Balance
from credits.store import Ledger
from payments import orders
from payments.errors import NotFulfillable, UnknownOrder
from payments.fulfilment import apply
from payments.provider import Payment

UNITS = 200 * UNITS_PER_CREDIT  # the starter pack: 200 credits for $5.00


async def new_order(engine: AsyncEngine, account: str, provider: str = "stripe") -> orders.Order:
    return await orders.create(engine, account, provider, "starter", "usd", 500, UNITS)


async def paid_order(engine: AsyncEngine, account: str, ref: str) -> orders.Order:
    """An order whose checkout started at Stripe as `ref`."""
    order = await new_order(engine, account)
    assert await orders.started(engine, order.id, ref)
    return await orders.get(engine, order.id)


def paid(order: orders.Order, status: str = "paid", **also: object) -> Payment:
    """What the provider says of the order's checkout."""
    fields: dict = {"amount_minor": order.amount_minor, "currency": order.currency} | also
    return Payment(order.provider_ref or "", order.id, status, **fields)  # type: ignore[arg-type]


async def fulfil(engine: AsyncEngine, ledger: Ledger, order: orders.Order) -> bool:
    """Apply the provider's word that `order` is paid; whether this call credited it."""
    fresh = await orders.get(engine, order.id)
    return (await apply(engine, ledger, order.id, paid(fresh))).granted > 0


async def test_a_person_buys_a_pack_and_is_credited_once(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    order = await paid_order(engine, "ann@example.com", "cs_test_ann")
    assert (await orders.get(engine, order.id)).state == "pending"
    assert await fulfil(engine, ledger, order)
    assert not await fulfil(engine, ledger, order)  # the webhook, again
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
    outcomes = await asyncio.gather(*(fulfil(engine, ledger, order) for _ in range(50)))
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
    assert await fulfil(engine, ledger, order)
    assert len(await ledger.history("cy@example.com")) == 1
    assert (await ledger.balance("cy@example.com")).available == 200_000


async def test_orders_that_cannot_be_paid_for(engine: AsyncEngine, ledger: Ledger) -> None:
    """No checkout yet: refused, nothing granted. Expired or failed at our side but paid at the
    provider: the provider decides, and it is paid. A payment for another order, or of another
    amount, is never credited."""
    fresh = await new_order(engine, "dee@example.com", "paypal")
    with pytest.raises(NotFulfillable, match="no checkout"):
        await fulfil(engine, ledger, fresh)
    assert await ledger.history("dee@example.com") == []
    late = await paid_order(engine, "dee@example.com", "cs_test_late")
    assert await orders.move(engine, late.id, "expired")
    assert await fulfil(engine, ledger, late)
    cheap = await paid_order(engine, "dee@example.com", "cs_test_cheap")
    change = await apply(engine, ledger, cheap.id, paid(cheap, amount_minor=1))
    assert (change.order.state, change.granted) == ("failed", 0)
    assert change.order.problem == "charged 1 usd, the order is for 500 usd"
    other = await paid_order(engine, "dee@example.com", "cs_test_other")
    change = await apply(engine, ledger, other.id, paid(late))
    assert change.order.state == "failed" and change.granted == 0
    assert (await ledger.balance("dee@example.com")).available == UNITS
    with pytest.raises(UnknownOrder):
        await apply(engine, ledger, "ord_nope", paid(late))


async def test_the_state_machine_moves_only_forward(engine: AsyncEngine, ledger: Ledger) -> None:
    order = await paid_order(engine, "eve@example.com", "cs_test_eve")
    assert not await orders.started(engine, order.id, "cs_test_other")  # started already
    assert await fulfil(engine, ledger, order)
    assert not await orders.move(engine, order.id, "pending")
    assert not await orders.move(engine, order.id, "expired")
    now = await orders.get(engine, order.id)
    for status in ("open", "processing", "expired", "failed"):  # late news of the checkout
        late = await apply(engine, ledger, order.id, paid(now, status))
        assert (late.order.state, late.order.provider_status, late.news) == ("paid", "paid", False)
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

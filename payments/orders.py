"""Orders: one row per checkout, moved through its states only by conditional updates.

    created -> pending (the checkout started at the provider) -> paid
            -> expired / failed            (paid may still follow expired: the provider decides)
    paid -> partially_refunded -> refunded
         -> disputed -> dispute_won / dispute_lost

An order keeps what was sold (pack, currency, amount in minor units, credits in ledger units) as
it was when the checkout started, so a repriced pack never changes an order. `fulfil` grants the
order's credits under its own transfer id, `<provider>:<checkout ref>`, then moves it to paid: the
webhook, the return page and reconciliation may all call it at once, any number of times, and a
process killed between the grant and the move is completed by the next call (the grant is a repeat,
the move happens once). Only the call that moved the order to paid is told it did.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.ledger import System
from credits.metering import transfer_id
from credits.store import Ledger
from payments.errors import NotFulfillable, UnknownOrder

log = logging.getLogger("payments")
metadata = MetaData()
orders = Table(
    "orders",
    metadata,
    Column("id", Text, primary_key=True),
    Column("account", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("pack", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("units", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("provider_ref", Text),
    Column("transfer_id", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

PROVIDERS = ("stripe", "paypal", "crypto")
SOURCE = {
    "stripe": System.STRIPE_CLEARING,
    "paypal": System.PAYPAL_CLEARING,
    "crypto": System.CRYPTO_CLEARING,
}
# Each state, and the states an order may reach it from.
MOVES: dict[str, tuple[str, ...]] = {
    "pending": ("created",),
    "paid": ("created", "pending", "expired"),
    "expired": ("created", "pending"),
    "failed": ("created", "pending"),
    "partially_refunded": ("paid", "partially_refunded", "dispute_won"),
    "refunded": ("paid", "partially_refunded", "dispute_won"),
    "disputed": ("paid", "partially_refunded", "dispute_won"),
    "dispute_won": ("disputed",),
    "dispute_lost": ("disputed",),
}
PAID = frozenset(
    {"paid", "partially_refunded", "refunded", "disputed", "dispute_won", "dispute_lost"}
)


@dataclass(frozen=True)
class Order:
    id: str
    account: str
    provider: str
    pack: str
    currency: str
    amount_minor: int
    units: int
    state: str
    provider_ref: str | None
    transfer_id: str | None
    created_at: datetime

    @property
    def grant_id(self) -> str:
        """The transfer id of this order's credits: `<provider>:<checkout ref>`."""
        if self.provider_ref is None:
            raise NotFulfillable(f"Order {self.id} has no checkout at {self.provider} yet.")
        return transfer_id(self.provider, self.provider_ref)


async def create(
    engine: AsyncEngine,
    account: str,
    provider: str,
    pack: str,
    currency: str,
    amount_minor: int,
    units: int,
) -> Order:
    """A new order of `account` for `pack`, under an id minted here."""
    if provider not in PROVIDERS:
        raise ValueError(f"Unknown payment provider {provider!r}.")
    if amount_minor <= 0 or units <= 0:
        raise ValueError("An order sells a positive number of credits for a positive amount.")
    now = datetime.now(UTC)
    order = Order(
        f"ord_{secrets.token_hex(16)}", account, provider, pack, currency, amount_minor, units,
        "created", None, None, now,
    )  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(insert(orders).values(**asdict(order), updated_at=now))
    return order


async def get(engine: AsyncEngine, order_id: str, account: str | None = None) -> Order:
    """The order `order_id` (of `account`, when given: another person's is not found)."""
    query = select(*[c for c in orders.c if c.name != "updated_at"]).where(orders.c.id == order_id)
    if account is not None:
        query = query.where(orders.c.account == account)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    if row is None:
        raise UnknownOrder(f"There is no order {order_id!r}.")
    return Order(*row)


async def started(engine: AsyncEngine, order_id: str, provider_ref: str) -> bool:
    """The checkout of a created order started at its provider as `provider_ref`: pending now.
    False if it had moved on (a second start of the same order changes nothing)."""
    return await _move(engine, order_id, "pending", provider_ref=provider_ref)


async def move(engine: AsyncEngine, order_id: str, to: str) -> bool:
    """Move the order to `to` if its state allows it now; whether it moved."""
    return await _move(engine, order_id, to)


async def fulfil(engine: AsyncEngine, ledger: Ledger, order_id: str) -> bool:
    """Grant the order's credits (once, under its own transfer id) and move it to paid. True only
    for the call that moved it; `NotFulfillable` when it has no checkout or has failed."""
    order = await get(engine, order_id)
    if order.state in PAID:
        return False
    if order.state not in MOVES["paid"]:
        raise NotFulfillable(f"Order {order.id} is {order.state}: it cannot be paid for.")
    grant = order.grant_id
    await ledger.grant(
        order.account, order.units, grant, code="purchase",
        metadata={"order": order.id, "pack": order.pack}, source=SOURCE[order.provider],
    )  # fmt: skip
    moved = await _move(engine, order.id, "paid", transfer_id=grant)
    if not moved and (now := await get(engine, order.id)).state not in PAID:
        log.error("Order %s was granted %s but is %s", order.id, grant, now.state)
    return moved


async def _move(engine: AsyncEngine, order_id: str, to: str, **also: str) -> bool:
    if to not in MOVES:
        raise ValueError(f"No order moves to {to!r}.")
    values = {"state": to, "updated_at": datetime.now(UTC), **also}
    async with engine.begin() as conn:
        done = await conn.execute(
            update(orders)
            .where((orders.c.id == order_id) & orders.c.state.in_(MOVES[to]))
            .values(**values)
        )
    return done.rowcount == 1

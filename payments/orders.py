"""Orders: one row per checkout, moved through its states only by conditional updates.

    created -> pending (the checkout started at the provider) -> paid
            -> expired / failed            (paid may still follow: the provider decides)
    paid -> partially_refunded -> refunded
         -> disputed -> dispute_won / dispute_lost

An order keeps what was sold (pack, currency, amount in minor units, credits in ledger units) as
it was when the checkout started, so a repriced pack never changes an order. What the provider
says of it afterwards (payment, receipt, refunds, disputes) is applied by `payments/fulfilment.py`,
the only writer of those columns.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.ledger import System
from credits.metering import transfer_id
from payments.errors import NotFulfillable, UnknownOrder

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
    Column("provider_status", Text),  # added by 0007: open, processing, paid, expired, failed
    Column("payment_ref", Text),
    Column("receipt_url", Text),
    Column("refunded_minor", BigInteger, nullable=False, server_default="0"),
    Column("dispute", Text),  # open, won, lost (the latest dispute)
    Column("problem", Text),  # why it was not credited, when the provider disagreed with it
    Column("version", Integer, nullable=False, server_default="0"),  # bumped by every change
    Column("credited", BigInteger),  # added by 0008: the units granted, where not `units`
)
events = Table(
    "payment_events",
    metadata,
    Column("provider", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("type", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("applied_at", DateTime(timezone=True)),
    Column("order_id", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_try_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True)),
    Column("last_error", Text),
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
    "paid": ("created", "pending", "expired", "failed"),
    "expired": ("created", "pending"),
    "failed": ("created", "pending"),
}
PAID = frozenset(
    {"paid", "partially_refunded", "refunded", "disputed", "dispute_won", "dispute_lost"}
)
STATUS = {
    "created": "not started", "paid": "paid", "expired": "expired", "failed": "failed",
    "partially_refunded": "partly refunded", "refunded": "refunded", "disputed": "disputed",
    "dispute_won": "dispute won", "dispute_lost": "dispute lost",
}  # fmt: skip
FIELDS = (
    "id", "account", "provider", "pack", "currency", "amount_minor", "units", "state",
    "provider_ref", "transfer_id", "created_at", "provider_status", "payment_ref", "receipt_url",
    "refunded_minor", "dispute", "problem", "version", "credited",
)  # fmt: skip


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
    provider_status: str | None = None
    payment_ref: str | None = None
    receipt_url: str | None = None
    refunded_minor: int = 0
    dispute: str | None = None
    problem: str | None = None
    version: int = 0
    credited: int | None = None  # the units granted: `units`, or in proportion to a crypto payment

    @property
    def grant_id(self) -> str:
        """The transfer id of this order's credits: `<provider>:<checkout ref>` (a crypto
        order's is its payment's, set when it is credited: payments/onchain.py)."""
        if self.transfer_id is not None:
            return self.transfer_id
        if self.provider_ref is None:
            raise NotFulfillable(f"Order {self.id} has no checkout at {self.provider} yet.")
        return transfer_id(self.provider, self.provider_ref)

    @property
    def received_minor(self) -> int:
        """What was paid for it, in minor units: its price, or for a crypto payment of another
        amount, its share at the quote's locked rate (as the credits were)."""
        if self.credited is None or self.credited == self.units:
            return self.amount_minor
        return self.amount_minor * self.credited // self.units

    @property
    def paid(self) -> bool:
        return self.state in PAID

    @property
    def status(self) -> str:
        """Where the order stands, as its buyer reads it (/billing, the return page)."""
        if self.state == "pending":
            return "processing" if self.provider_status == "processing" else "awaiting payment"
        return STATUS[self.state]


def _order(row: Sequence[Any]) -> Order:
    """An order from its row (SQLite gives back its times without their zone: UTC)."""
    order = Order(*row)
    if order.created_at.tzinfo is None:
        return replace(order, created_at=order.created_at.replace(tzinfo=UTC))
    return order


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
        await conn.execute(
            insert(orders).values({f: getattr(order, f) for f in FIELDS} | {"updated_at": now})
        )
    return order


async def get(engine: AsyncEngine, order_id: str, account: str | None = None) -> Order:
    """The order `order_id` (of `account`, when given: another person's is not found)."""
    query = select(*[orders.c[f] for f in FIELDS]).where(orders.c.id == order_id)
    if account is not None:
        query = query.where(orders.c.account == account)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    if row is None:
        raise UnknownOrder(f"There is no order {order_id!r}.")
    return _order(row)


async def of_account(engine: AsyncEngine, account: str, limit: int = 50) -> list[Order]:
    """The person's orders that reached their provider, newest first."""
    query = (
        select(*[orders.c[f] for f in FIELDS])
        .where((orders.c.account == account) & (orders.c.state != "created"))
        .order_by(orders.c.created_at.desc(), orders.c.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        return [_order(row) for row in await conn.execute(query)]


async def since(engine: AsyncEngine, moment: datetime) -> list[Order]:
    """Every order changed since `moment` (reconciliation, reports)."""
    query = select(*[orders.c[f] for f in FIELDS]).where(orders.c.updated_at >= moment)
    async with engine.connect() as conn:
        return [_order(row) for row in await conn.execute(query.order_by(orders.c.created_at))]


async def find(engine: AsyncEngine, provider: str, ref: str) -> Order | None:
    """The order whose checkout at `provider` is `ref`."""
    query = select(*[orders.c[f] for f in FIELDS]).where(
        (orders.c.provider == provider) & (orders.c.provider_ref == ref)
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    return None if row is None else _order(row)


async def started(engine: AsyncEngine, order_id: str, provider_ref: str) -> bool:
    """The checkout of a created order started at its provider as `provider_ref`: pending now.
    False if it had moved on (a second start of the same order changes nothing)."""
    return await move(engine, order_id, "pending", provider_ref=provider_ref)


async def move(engine: AsyncEngine, order_id: str, to: str, **also: object) -> bool:
    """Move the order to `to` if its state allows it now; whether it moved."""
    if to not in MOVES:
        raise ValueError(f"No order moves to {to!r} this way.")
    values = {"state": to, "updated_at": datetime.now(UTC), "version": orders.c.version + 1, **also}
    async with engine.begin() as conn:
        done = await conn.execute(
            update(orders)
            .where((orders.c.id == order_id) & orders.c.state.in_(MOVES[to]))
            .values(**values)
        )
    return done.rowcount == 1

"""Quotes for costly work, waiting for the person's word: confirmed once, or cancelled.

A quote is shown with Confirm and Cancel; buttons are not kept by Chainlit, so the quote lives here,
and a chat reopened on its thread shows it again while it is open. Deciding is one conditional
update (`open` -> `confirmed` or `cancelled`): two clicks, two tabs or two replicas confirm once,
and only the person it was made for can decide it. A quote left open for `OPEN_FOR` expires: its
price may no longer hold.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    MetaData,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

OPEN_FOR = timedelta(minutes=30)

metadata = MetaData()
work_quotes = Table(
    "work_quotes",
    metadata,
    Column("id", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("thread_id", Text),
    Column("kind", Text, nullable=False),
    Column("request", Text, nullable=False),  # JSON: what to run once confirmed
    Column("units", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    CheckConstraint("units >= 0", name="ck_work_quote_units"),
    CheckConstraint(
        "state IN ('open', 'confirmed', 'cancelled', 'expired')", name="ck_work_quote_state"
    ),
)
Index("ix_work_quotes_thread", work_quotes.c.owner, work_quotes.c.thread_id, work_quotes.c.state)

Decision = Literal["confirmed", "cancelled"]


@dataclass(frozen=True)
class Quote:
    id: str
    owner: str
    thread_id: str | None
    kind: str
    request: dict[str, Any]
    units: int
    state: str
    created_at: datetime


def _quote(row: Any) -> Quote:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return Quote(
        row.id, row.owner, row.thread_id, row.kind, json.loads(row.request), row.units,
        row.state, created,
    )  # fmt: skip


async def offer(
    engine: AsyncEngine,
    owner: str,
    thread_id: str | None,
    kind: str,
    request: dict[str, Any],
    units: int,
) -> Quote:
    """A new open quote for `owner`."""
    quote = Quote(
        secrets.token_urlsafe(16), owner, thread_id, kind, request, units, "open",
        datetime.now(UTC),
    )  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(
            insert(work_quotes).values(
                id=quote.id, owner=owner, thread_id=thread_id, kind=kind,
                request=json.dumps(request), units=units, state="open",
                created_at=quote.created_at,
            )
        )  # fmt: skip
    return quote


async def decide(
    engine: AsyncEngine, quote_id: str, owner: str, decision: Decision
) -> Quote | None:
    """Confirm or cancel `owner`'s open quote; None when there is no such open quote (decided
    already, expired, or not theirs): the caller does nothing."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        done = await conn.execute(
            update(work_quotes)
            .where(
                work_quotes.c.id == quote_id,
                work_quotes.c.owner == owner,
                work_quotes.c.state == "open",
                work_quotes.c.created_at > now - OPEN_FOR,
            )
            .values(state=decision, decided_at=now)
        )
        if done.rowcount != 1:
            return None
        row = (await conn.execute(select(work_quotes).where(work_quotes.c.id == quote_id))).one()
    return _quote(row)


async def open_in(engine: AsyncEngine, owner: str, thread_id: str) -> list[Quote]:
    """`owner`'s quotes still open in `thread_id` (older ones are marked expired on the way)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            update(work_quotes)
            .where(
                work_quotes.c.owner == owner,
                work_quotes.c.state == "open",
                work_quotes.c.created_at <= now - OPEN_FOR,
            )
            .values(state="expired", decided_at=now)
        )
        rows = await conn.execute(
            select(work_quotes)
            .where(
                work_quotes.c.owner == owner,
                work_quotes.c.thread_id == thread_id,
                work_quotes.c.state == "open",
            )
            .order_by(work_quotes.c.created_at)
        )
        return [_quote(r) for r in rows]

"""Providers' notifications: verified and stored as they arrive, applied by a worker.

A webhook is answered as soon as its signature holds and it is stored (one row per provider and
event id, so a duplicate is stored once); providers want a quick 2xx, and a notification is only a
trigger anyway. Applying it means asking the provider which checkout it is about and where that
stands, which takes the provider's time: the worker does that, marks the row applied in the same
transaction as the order's change (payments/fulfilment.py), and tells the person.

The worker is woken by each arrival (once a burst of arrivals has been answered, at most a
quarter of a second later) and also looks every few seconds. A notification that could
not be applied (the provider down, anything unexpected) is tried again later, backing off from
2 s to an hour, with the error kept on its row; reconciliation covers what never arrives. On
several replicas, each row is claimed for a while before it is worked on, so one replica works on
it at a time (and if one did twice, applying is idempotent). The worker's own failures are logged
and it goes on: nothing ends it but the app's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.providers import Health
from credits.store import Ledger
from payments import orders
from payments.fulfilment import Change, apply
from payments.provider import Notice, PaymentProvider

log = logging.getLogger("payments")
events = orders.events
Tell = Callable[[Change], Awaitable[None]]
LEASE = timedelta(seconds=60)
QUIET_S = 0.02
MOST_WAIT_S = 0.25
MAX_BACKOFF_S = 3600.0


async def receive(
    engine: AsyncEngine, provider: PaymentProvider, body: bytes, headers: Mapping[str, str]
) -> Notice:
    """Verify a notification (`ForgedNotice` if it does not hold) and store it, once."""
    notice = await provider.verify(body, headers)
    await store(engine, [(provider.name, notice, body)])
    return notice


async def store(engine: AsyncEngine, arrived: list[tuple[str, Notice, bytes]]) -> None:
    """Store verified notifications in one transaction; one stored before is left as it is."""
    now = datetime.now(UTC)
    rows = [
        {"provider": name, "event_id": n.event_id, "type": n.type, "body": body.decode(),
         "received_at": now, "next_try_at": now}
        for name, n, body in arrived
    ]  # fmt: skip
    dialect = engine.dialect.name
    insert = sqlite_insert if dialect == "sqlite" else postgres_insert
    async with engine.begin() as conn:
        await conn.execute(insert(events).on_conflict_do_nothing(), rows)


async def process(
    engine: AsyncEngine, ledger: Ledger, provider: PaymentProvider, notice: Notice
) -> Change | None:
    """Apply a stored notification: None when it was applied before or is about nothing we sold
    (then it is marked applied, about no order)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(events.c.body, events.c.applied_at).where(
                    (events.c.provider == provider.name) & (events.c.event_id == notice.event_id)
                )
            )
        ).one()
    if row.applied_at is not None:
        return None
    ref = await provider.checkout_of(row.body.encode())
    order = await orders.find(engine, provider.name, ref) if ref else None
    if order is None:
        if ref is not None:
            log.warning("payments: %s event %s is about checkout %s, not one of ours",
                        provider.name, notice.event_id, ref)  # fmt: skip
        await _mark(engine, provider.name, notice.event_id, applied_at=datetime.now(UTC))
        return None
    payment = await provider.confirm(ref or "")
    change = await apply(engine, ledger, order.id, payment, notice)
    return None if change.repeat else change


async def _mark(engine: AsyncEngine, provider: str, event_id: str, **values: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(events)
            .where((events.c.provider == provider) & (events.c.event_id == event_id))
            .values(**values)
        )


class Inbox:
    """The worker applying stored notifications; `kick` it when one arrives."""

    def __init__(
        self,
        engine: AsyncEngine,
        ledger: Ledger,
        providers: Mapping[str, PaymentProvider],
        tell: Tell,
        poll_s: float = 5.0,
        batch: int = 32,
    ) -> None:
        self.engine, self.ledger, self.providers, self.tell = engine, ledger, providers, tell
        self.poll_s, self.batch = poll_s, batch
        self._wake = asyncio.Event()
        self._last_arrival = 0.0
        self._arrivals: list[tuple[str, Notice, bytes, asyncio.Future[None]]] = []
        self._storing: asyncio.Task[None] | None = None
        self._closing = False
        # Notifications this worker could not apply yet, and why (reported by /healthz).
        self.retrying: dict[tuple[str, str], str] = {}
        self._task: asyncio.Task[None] | None = None

    async def receive(self, name: str, body: bytes, headers: Mapping[str, str]) -> Notice:
        """Verify and store a notification (stored before this returns, so that a 2xx means
        kept), then wake the worker. Notifications arriving together are stored in one
        transaction: concurrent SQLite writers would wait on each other's locks."""
        provider = self.providers[name]
        notice = await provider.verify(body, headers)
        kept: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._arrivals.append((provider.name, notice, body, kept))
        if self._storing is None or self._storing.done():
            self._storing = asyncio.create_task(self._store_arrivals())
        await kept
        self.kick()
        return notice

    async def _store_arrivals(self) -> None:
        while self._arrivals:
            batch, self._arrivals = self._arrivals, []
            try:
                await store(self.engine, [(name, n, body) for name, n, body, _ in batch])
            except Exception as error:
                for *_, kept in batch:
                    if not kept.done():
                        kept.set_exception(error)
            else:
                for *_, kept in batch:
                    if not kept.done():
                        kept.set_result(None)

    def kick(self) -> None:
        self._last_arrival = time.monotonic()
        self._wake.set()

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._work_forever(), name="payment-inbox")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The worker ended without being closed: say so, and start it again."""
        if self._closing:
            return
        error = None if task.cancelled() else task.exception()
        log.error("payments: the notification worker stopped; starting it again", exc_info=error)
        self.start()

    def health(self) -> Health:
        if not self.providers:
            return Health(True, "no payment provider configured")
        if self._task is None or self._task.done():
            return Health(False, "the notification worker is not running")
        if self.retrying:
            (name, event_id), error = next(iter(self.retrying.items()))
            return Health(
                True,
                f"applying notifications; {len(self.retrying)} waiting to be tried again "
                f"(such as {name} {event_id}: {error})",
            )
        return Health(True, "applying notifications")

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def drain(self) -> None:
        """Work until nothing is due (tests, the command line)."""
        while await self._round():
            pass

    async def _work_forever(self) -> None:
        while True:
            await self._quiet()
            try:
                while await self._round():
                    pass
            except Exception:
                log.exception("payments: the notification worker failed; it goes on")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    async def _quiet(self) -> None:
        """Let a burst of deliveries be answered first: wait until none has arrived for
        `QUIET_S`, at most `MOST_WAIT_S` (the webhook answers and the applying share one event
        loop, and providers time out slow answers)."""
        waited = 0.0
        while waited < MOST_WAIT_S and time.monotonic() - self._last_arrival < QUIET_S:
            await asyncio.sleep(QUIET_S)
            waited += QUIET_S

    async def _round(self) -> int:
        """Claim and apply the notifications due now; how many were claimed."""
        now = datetime.now(UTC)
        async with self.engine.connect() as conn:
            due = (
                await conn.execute(
                    select(events.c.provider, events.c.event_id, events.c.type, events.c.attempts)
                    .where(
                        events.c.applied_at.is_(None)
                        & (events.c.next_try_at <= now)
                        & (events.c.claimed_until.is_(None) | (events.c.claimed_until < now))
                    )
                    .order_by(events.c.received_at)
                    .limit(self.batch)
                )
            ).all()
        mine = [row for row in due if await self._claim(row.provider, row.event_id, now)]
        await asyncio.gather(*(self._apply(row.provider, row.event_id, row.type, row.attempts)
                               for row in mine))  # fmt: skip
        return len(mine)

    async def _claim(self, provider: str, event_id: str, now: datetime) -> bool:
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(events)
                .where(
                    (events.c.provider == provider) & (events.c.event_id == event_id)
                    & events.c.applied_at.is_(None)
                    & (events.c.claimed_until.is_(None) | (events.c.claimed_until < now))
                )
                .values(claimed_until=now + LEASE)
            )  # fmt: skip
        return done.rowcount == 1

    async def _apply(self, name: str, event_id: str, kind: str, attempts: int) -> None:
        provider = self.providers.get(name)
        try:
            if provider is None:
                raise LookupError(f"{name} is not configured here any more")
            change = await process(self.engine, self.ledger, provider, Notice(event_id, kind))
        except Exception as error:
            pause = min(2.0 ** (attempts + 1), MAX_BACKOFF_S)
            log.warning("payments: %s event %s not applied (try %d), again in %.0f s: %s",
                        name, event_id, attempts + 1, pause, error)  # fmt: skip
            await _mark(
                self.engine, name, event_id, attempts=attempts + 1, claimed_until=None,
                next_try_at=datetime.now(UTC) + timedelta(seconds=pause),
                last_error=f"{type(error).__name__}: {error}"[:1000],
            )  # fmt: skip
            self.retrying[name, event_id] = f"{type(error).__name__}: {error}"[:200]
            return
        self.retrying.pop((name, event_id), None)
        if change is not None and change.news:
            await self.tell(change)

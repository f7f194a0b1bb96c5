"""The ledger's hot path on PostgreSQL: concurrent reserves and resolutions sent as batches.

Requests that arrive while a batch is being written wait for the next one; each batch is one call of
a PL/pgSQL function (`credits/migrations/versions/0001_ledger_functions.sql`) and one commit, every
request in its own subtransaction with its own outcome — SQLite's group commit, in PostgreSQL.
Batches are sorted by user so that batches running side by side take row locks in the same order.
A request the batch could not decide (a race with a twin request, stale holds to sweep) comes back
as None for the store's general path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from credits.ledger import Kind, Request, resolution

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """Groups concurrent `submit`s into calls of `run` (a few at a time, up to `size` each).

    A batch runs on one PostgreSQL backend, so on one core: a burst larger than `size` is split
    into batches that run side by side on their own connections. With one batch of up to 256, 64
    clients' requests went as one batch and one core stayed ~40% idle (bench/ledger.py's c64 turns
    on two cores: 885-1,178 turns/s); at most 32 a batch and 4 at once, 1,241-1,576, the two
    alternating in one session.
    """

    def __init__(
        self, run: Callable[[list[T]], Awaitable[list[R]]], size: int = 32, parallel: int = 4
    ) -> None:
        self._run = run
        self._size = size
        self._slots = asyncio.Semaphore(parallel)
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if len(self._waiting) == 1:  # the first of a new batch starts a writer for it
            task = asyncio.create_task(self._write())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _write(self) -> None:
        async with self._slots:  # while we wait, more requests join the batch
            batch, self._waiting = self._waiting[: self._size], self._waiting[self._size :]
            if self._waiting:
                task = asyncio.create_task(self._write())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not batch:
                return
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


@dataclass(frozen=True)
class Outcome:
    """What PostgreSQL decided for one request of a batch."""

    outcome: str
    transfer_pk: int | None
    value: int | None  # available units (reserve) or the amount moved (resolve)
    now_us: int
    request: Request | None = None


async def reserve_many(
    pool: asyncpg.Pool, credit_id: int, now_us: int, requests: list[Request]
) -> list[Outcome]:
    order = sorted(range(len(requests)), key=lambda i: requests[i].debit)
    reqs = [requests[i] for i in order]
    rows = await pool.fetch(
        "SELECT * FROM ledger_reserve_many($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [r.transfer_id for r in reqs], [r.code for r in reqs], [r.amount for r in reqs],
        [r.debit for r in reqs], credit_id, [(r.timeout_s or 0) * 1_000_000 for r in reqs],
        [r.metadata for r in reqs], [r.fingerprint for r in reqs], now_us,
    )  # fmt: skip
    out: list[Outcome | None] = [None] * len(requests)
    for row in rows:
        original = order[row["i"] - 1]
        out[original] = Outcome(row["outcome"], row["transfer_pk"], row["available"], now_us)
    return [o or Outcome("retry", None, None, now_us) for o in out]


@dataclass(frozen=True)
class Resolution:
    hold_id: str
    kind: Kind
    amount: int
    extra: dict[str, Any]


async def resolve_many(pool: asyncpg.Pool, now_us: int, items: list[Resolution]) -> list[Outcome]:
    """Read the holds (one query), build each request as the general path does, resolve them."""
    holds = {
        r["transfer_id"]: r
        for r in await pool.fetch(
            "SELECT t.transfer_id, d.name, c.name AS credit, t.code, t.metadata "
            "FROM ledger_transfers t JOIN ledger_accounts d ON d.id = t.debit_id "
            "JOIN ledger_accounts c ON c.id = t.credit_id "
            "WHERE t.transfer_id = ANY($1) AND t.kind = 'pending'",
            list({item.hold_id for item in items}),
        )
    }
    requests: dict[int, Request] = {}
    for i, item in enumerate(items):
        hold = holds.get(item.hold_id)
        if hold is None:
            continue
        held = (hold["code"], hold["name"], hold["credit"])
        meta = json.loads(hold["metadata"])
        requests[i] = resolution(item.hold_id, item.kind, item.amount, held, meta, item.extra)
    out = [Outcome("unknown", None, None, now_us) for _ in items]
    known = sorted(requests, key=lambda i: requests[i].debit)
    if not known:
        return out
    reqs = [requests[i] for i in known]
    rows = await pool.fetch(
        "SELECT * FROM ledger_resolve_many($1, $2, $3, $4, $5, $6, $7)",
        [r.transfer_id for r in reqs], [r.kind.value for r in reqs], [r.hold for r in reqs],
        [r.amount for r in reqs], [r.metadata for r in reqs], [r.fingerprint for r in reqs],
        now_us,
    )  # fmt: skip
    for row in rows:
        original = known[row["i"] - 1]
        out[original] = Outcome(
            row["outcome"], row["transfer_pk"], row["amount"], now_us, requests[original]
        )
    return out

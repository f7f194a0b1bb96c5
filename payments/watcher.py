"""The chain watcher: finds payments to the receiving address as blocks are mined, and credits them
once they have their confirmations.

Every `poll_s` seconds the replica holding the chain's lease (a row in `chain_cursors`: one
replica at a time works on a chain; another takes over when a lease is not renewed) scans the
blocks after its cursor (`eth_getLogs` for the token's Transfer logs to us, whole blocks for
native transfers), records what it finds (payments/onchain.py), moves the cursor (number and hash,
in the database: a restart resumes there), and counts confirmations at the head.

A reorg shows as the cursor's block hash no longer being the chain's: the watcher steps back
`window` blocks, re-checks every payment from there (payments/onchain.py `recheck`) and scans
again. The node down or slow: the poll fails with `ProviderDown`, the watcher waits (doubling up
to a minute) and catches up from its cursor; nothing is lost. If the loop itself ever dies, it is
logged and started again; `/healthz` says how far behind it is and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.store import Ledger
from payments import onchain
from payments.chain import Chain, Transfer
from payments.errors import ProviderDown
from payments.onchain import News
from payments.quotes import CryptoConfig

log = logging.getLogger("payments")
LONGEST_WAIT_S = 60.0
EXPIRE_EVERY_S = 60.0  # how often quotes that ended unpaid are marked expired

metadata = MetaData()
cursors = Table(
    "chain_cursors",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("block_number", BigInteger),  # the last block scanned; NULL before the first scan
    Column("block_hash", Text),
    Column("owner", Text),  # the replica holding the lease
    Column("lease_until", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Cursor:
    number: int
    hash: str


class Watcher:
    """One chain's watcher in this process (see the module's text)."""

    def __init__(
        self,
        engine: AsyncEngine,
        ledger: Ledger,
        chain: Chain,
        config: CryptoConfig,
        tell: Callable[[News], Awaitable[None]],
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.ledger = ledger
        self.chain = chain
        self.config = config
        self.tell = tell
        self.me = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease = timedelta(seconds=max(30.0, config.poll_s * 10))
        self.window = max(2 * config.confirmations, 64)  # how far back a reorg is looked for
        self.checked = False  # the node's chain id was checked against the configured one
        self.task: asyncio.Task[None] | None = None
        self.head: int | None = None
        self.cursor: int | None = None
        self.leading = False
        self.failures = 0
        self.restarts = 0
        self.last_error: str | None = None
        self.last_expiry: float | None = None
        self.wake = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.create_task(
            self._supervise(), name=f"chain-watcher-{self.chain.chain_id}"
        )

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(Exception):
            await self._release()

    def poke(self) -> None:
        """Poll now rather than at the next interval (a pasted hash, a test)."""
        self.wake.set()

    def health(self) -> dict[str, Any]:
        alive = self.task is not None and not self.task.done()
        behind = None if self.head is None or self.cursor is None else self.head - self.cursor
        return {
            "ok": alive and (self.last_error is None or self.failures < 5),
            "chain_id": self.chain.chain_id, "role": "watching" if self.leading else "standby",
            "head": self.head, "cursor": self.cursor, "behind": behind,
            "failures": self.failures, "last_error": self.last_error, "restarts": self.restarts,
        }  # fmt: skip

    def summary(self) -> tuple[bool, str]:
        """Whether the watcher is well, in words (/healthz)."""
        h = self.health()
        if self.task is None or self.task.done():
            return False, "not running"
        if h["last_error"]:
            return h["ok"], f"{h['failures']} failed polls, waiting: {h['last_error']}"
        if h["role"] == "standby":
            return True, f"chain {h['chain_id']}: another replica watches it"
        if h["behind"] is None:
            return True, f"chain {h['chain_id']}: starting"
        return True, f"chain {h['chain_id']}: block {h['cursor']}, {h['behind']} behind the head"

    async def _supervise(self) -> None:
        while True:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.restarts += 1
                log.exception("payments: the chain watcher died; starting it again")
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        while True:
            delay = self.config.poll_s
            try:
                await self.poll()
                self.failures, self.last_error = 0, None
            except (ProviderDown, ValueError) as down:
                self.failures += 1
                self.last_error = str(down)
                delay = min(self.config.poll_s * 2**self.failures, LONGEST_WAIT_S)
                log.warning("payments: chain %d: %s; trying again in %.0f s",
                            self.chain.chain_id, down, delay)  # fmt: skip
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)

    async def poll(self) -> int:
        """One round: scan what was mined since the cursor, count confirmations, credit. Returns
        the number of blocks scanned (0 when another replica holds the lease)."""
        self.leading = await self._take_lease()
        if not self.leading:
            return 0
        if not self.checked:
            await self.chain.check()
            self.checked = True
        head = await self.chain.head()
        self.head = head
        cursor = await self._cursor(head)
        if await self.chain.block_hash(cursor.number) != cursor.hash:
            cursor = await self._step_back(cursor)
        scanned = 0
        while cursor.number < head:
            last = min(cursor.number + self.config.log_range, head)
            found = await self._transfers(cursor.number + 1, last)
            await self._tell_all(await onchain.record(self.engine, self.config, found))
            end = await self.chain.block_hash(last)
            if end is None:  # the chain got shorter meanwhile: the next round steps back
                break
            scanned += last - cursor.number
            cursor = Cursor(last, end)
            if not await self._save(cursor):
                return scanned  # the lease was lost: another replica goes on
        finalized = await self.chain.finalized() if self.config.finalized else None
        news = await onchain.advance(
            self.engine, self.ledger, self.chain, self.config, head, finalized
        )
        await self._tell_all(news)
        if self.last_expiry is None or time.monotonic() - self.last_expiry >= EXPIRE_EVERY_S:
            await onchain.expire_quotes(self.engine, self.config, datetime.now(UTC))
            self.last_expiry = time.monotonic()
        return scanned

    async def _transfers(self, first: int, last: int) -> list[Transfer]:
        config, found = self.config, []
        if config.token is not None and config.token.token is not None:
            found += await self.chain.token_transfers(
                config.token.token, config.recipient, first, last
            )
        if config.native is not None:
            found += await self.chain.native_transfers(config.recipient, first, last)
        return found

    async def _step_back(self, cursor: Cursor) -> Cursor:
        """The chain reorganised below the cursor: re-check the payments of the last `window`
        blocks and scan them again."""
        back = max(cursor.number - self.window, 0)
        log.warning("payments: chain %d reorganised below block %d; scanning again from %d",
                    self.chain.chain_id, cursor.number, back + 1)  # fmt: skip
        await self._tell_all(await onchain.recheck(self.engine, self.chain, self.config, back + 1))
        back_hash = await self.chain.block_hash(back)
        if back_hash is None:
            raise ProviderDown(f"chain {self.chain.chain_id} has no block {back}")
        stepped = Cursor(back, back_hash)
        await self._save(stepped)
        return stepped

    async def _cursor(self, head: int) -> Cursor:
        """Where the last scan ended; on the first, the block before `start_block` (default: the
        head: earlier payments can still be claimed by their hash)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(cursors.c.block_number, cursors.c.block_hash).where(
                        cursors.c.chain_id == self.chain.chain_id
                    )
                )
            ).one()
        if row.block_number is not None:
            self.cursor = int(row.block_number)
            return Cursor(int(row.block_number), str(row.block_hash))
        start = self.config.start_block if self.config.start_block is not None else head
        number = max(start - 1, 0)
        found = await self.chain.block_hash(number)
        if found is None:
            raise ProviderDown(f"chain {self.chain.chain_id} has no block {number} yet")
        cursor = Cursor(number, found)
        await self._save(cursor)
        return cursor

    async def _save(self, cursor: Cursor) -> bool:
        """Move the cursor, and renew the lease, if this replica still holds it."""
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(cursors)
                .where((cursors.c.chain_id == self.chain.chain_id) & (cursors.c.owner == self.me))
                .values(
                    block_number=cursor.number,
                    block_hash=cursor.hash,
                    lease_until=now + self.lease,
                    updated_at=now,
                )
            )
        self.cursor = cursor.number
        return done.rowcount == 1

    async def _take_lease(self) -> bool:
        now = datetime.now(UTC)
        table = cursors.c
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(cursors)
                .where((table.chain_id == self.chain.chain_id) & (
                    (table.owner == self.me) | table.lease_until.is_(None)
                    | (table.lease_until < now)))
                .values(owner=self.me, lease_until=now + self.lease, updated_at=now)
            )  # fmt: skip
        if done.rowcount == 1:
            return True
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(cursors).values(chain_id=self.chain.chain_id, owner=self.me,
                                           lease_until=now + self.lease, updated_at=now)
                )  # fmt: skip
        except IntegrityError:
            return False  # another replica holds it
        return True

    async def _release(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(cursors)
                .where((cursors.c.chain_id == self.chain.chain_id) & (cursors.c.owner == self.me))
                .values(lease_until=None)
            )

    async def _tell_all(self, news: list[News]) -> None:
        for item in news:
            try:
                await self.tell(item)
            except Exception:
                log.exception("payments: telling %s about a crypto payment failed", item.account)

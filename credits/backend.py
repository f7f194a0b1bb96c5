"""The ledger's life cycle and its two backends: SQLite (its own file, the default) or PostgreSQL.

SQLite: operations queue for one writer thread that commits them in groups (`credits/sqlite.py`);
the log is appended in the same transaction. PostgreSQL: reserves and resolutions go in batches to
PL/pgSQL functions (`credits/postgres.py`), everything else runs as one READ COMMITTED transaction
(`ops.py` through SQLAlchemy); a sequencer task appends the log a few times a second, and on demand
before a verify or a receipt.

Starting migrates the schema, reads (or at first start makes) the signing key and pins its public
half, and starts the background work; nothing is opened before. Callers may be cancelled at any
moment (a Stop press cancels the chat turn waiting on its hold): an operation, once asked for, runs
to its end whatever happens to its caller, and its result goes to an `if_abandoned` hook. The SQLite
writer thread is watched by a supervisor task, which restarts it if it dies (its queue carries
over); `problem()` says what is wrong, for the health check.

Its size is the two backends' plumbing side by side (SQLite writer, PostgreSQL pool and batchers):
what differs between them is kept in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from credits import log, migrate, ops, postgres, sequencer, sqlite
from credits.errors import IntegrityError
from credits.ledger import AccountKind, Request, System
from credits.ops import Db, SaDb, SqliteDb

R = TypeVar("R")
T = TypeVar("T")
Op = Callable[[Db], R]
logger = logging.getLogger("credits")


def now_us() -> int:
    return time.time_ns() // 1000


class Backend:
    """Where the ledger's rows are and how an operation reaches them (see the module's docstring);
    `Ledger` (credits/store.py) adds the operations and reads."""

    def __init__(
        self,
        url: str,
        data_dir: Path,
        signing_key: log.Ed25519PrivateKey | Callable[[], log.Ed25519PrivateKey],
        checkpoint_every: int = 1000,
        checkpoint_every_s: float = 60.0,
        synchronous: str = "FULL",
        clock: Callable[[], int] = now_us,
        supervise_every_s: float = 1.0,
        pinned_key_file: Path | None = None,
    ) -> None:
        self.url = url
        self.data_dir = data_dir
        self.clock = clock
        # A key, or what reads it when the ledger starts (opening the ledger touches no file).
        self._signing_key = signing_key
        self._cadence = (checkpoint_every, int(checkpoint_every_s * 1e6))
        self.signer: sequencer.Signer  # these three are known once the key is
        self.public_key: log.Ed25519PublicKey
        self.pinned_key: log.Ed25519PublicKey
        if isinstance(signing_key, log.Ed25519PrivateKey):
            self._take_key(signing_key)
        # Recorded outside the database at first start; `verify` trusts this key and no other.
        self.pinned_key_file = pinned_key_file or data_dir / "ledger-public-key"
        self.pinned_now = False  # the key was pinned by this start (the app prints it)
        self.ledger_id = ""  # this ledger's own id, named in every checkpoint's origin
        self.legacy_origin = False  # it signed checkpoints under the bare origin before it had one
        self.read_only = False
        self.sqlite = make_url(url).get_backend_name() == "sqlite"
        self._writer: sqlite.Writer | None = None
        self._engine: AsyncEngine | None = None
        self._pg: asyncpg.Pool | None = None  # PostgreSQL's batched hot path
        # Roots of complete chunks of the log, computed for receipts and kept (they never change).
        self.log_chunks: dict[int, bytes] = {}
        self._system_ids: dict[str, int] = {}
        self._reserves: postgres.Batcher[Request, postgres.Outcome]
        self._resolutions: postgres.Batcher[postgres.Resolution, postgres.Outcome]
        self._synchronous = synchronous
        self._tasks: list[asyncio.Task[None]] = []
        self._supervise_every_s = supervise_every_s
        # Releases of holds whose callers were cancelled: awaited before the ledger closes.
        self._orphans: set[asyncio.Task[Any]] = set()
        self.checkpoint_file = data_dir / "ledger-checkpoints.jsonl"

    # Life cycle ---------------------------------------------------------------------------------

    async def start(self, background: bool = True, read_only: bool = False) -> None:
        """Migrate, open connections, create the system accounts, start background work.

        `read_only` (verify, audit, receipts from the command line): nothing is written or
        signed, so the ledger can be checked even when the signing key is not the pinned one."""
        await migrate.upgrade_async(self.url)
        self.read_only = read_only
        if not isinstance(self._signing_key, log.Ed25519PrivateKey):
            self._take_key(await asyncio.to_thread(self._signing_key))
        self._pin_key()
        if not self.sqlite:
            # The batched hot path has its own asyncpg pool; this one serves the rest.
            self._engine = create_async_engine(self.url, pool_size=5, max_overflow=10)
        self.ledger_id, self.legacy_origin = await self._read_identity()
        self.signer = replace(self.signer, origin=log.origin_of(self.ledger_id))
        if read_only:
            return
        if self.sqlite:
            self._writer = self._new_writer(background)
            self._writer.start()
        now = self.clock()

        def open_system_accounts(c: Db) -> None:
            for name in System:
                ops.open_account(c, name.value, AccountKind.SYSTEM, now)

        await self._write(open_system_accounts)
        if not self.sqlite:
            self._pg = await asyncpg.create_pool(self.address()[1], min_size=2, max_size=20)
            rows = await self._pg.fetch(
                "SELECT name, id FROM ledger_accounts WHERE kind = 'system'"
            )
            self._system_ids = {r["name"]: r["id"] for r in rows}
            pool, revenue = self._pg, self._system_ids[System.USAGE_REVENUE.value]
            self._reserves = postgres.Batcher(
                lambda reqs: postgres.reserve_many(pool, revenue, self.clock(), reqs)
            )
            self._resolutions = postgres.Batcher(
                lambda items: postgres.resolve_many(pool, self.clock(), items)
            )
        if background and self.sqlite:
            self._tasks.append(asyncio.create_task(self._every(2.0, self._wal_checkpoint)))
            every = min(5.0, self.signer.every_us / 1e6)
            self._tasks.append(asyncio.create_task(self._every(every, self._sign_when_due)))
            self._tasks.append(
                asyncio.create_task(self._every(self._supervise_every_s, self._supervise))
            )

    def _take_key(self, key: log.Ed25519PrivateKey) -> None:
        self.signer = sequencer.Signer(key, *self._cadence)
        self.public_key = key.public_key()
        self.pinned_key = self.public_key

    def _pin_key(self) -> None:
        """Pin the signing key's public half at first start; refuse to sign with any other."""
        self.pinned_key, self.pinned_now = log.pin_public_key(self.pinned_key_file, self.public_key)
        if self.pinned_now:
            logger.warning(
                "ledger: public key pinned in %s: %s (keep a copy elsewhere; "
                "`python -m credits verify --public-key KEY` checks against it)",
                self.pinned_key_file, log.public_key_b64(self.public_key),
            )  # fmt: skip
        elif log.key_id(self.pinned_key) != log.key_id(self.public_key) and not self.read_only:
            raise IntegrityError(
                f"The ledger's signing key (key id {log.key_id(self.public_key)}) is not the "
                f"pinned one ({log.key_id(self.pinned_key)}, in {self.pinned_key_file}): "
                "checkpoints signed with it would not verify. Restore the original signing key."
            )

    async def _read_identity(self) -> tuple[str, bool]:
        row = await self._read(
            lambda c: c.one("SELECT ledger_id, legacy_origin FROM ledger_meta WHERE id = 1")
        )
        assert row is not None, "migration ledger_0002 records the ledger's id"
        return str(row[0]), bool(row[1])

    def _new_writer(self, background: bool, after: sqlite.Writer | None = None) -> sqlite.Writer:
        return sqlite.Writer(
            self._sqlite_path(), self._synchronous, self.signer, self.clock, self._after_commit,
            wal_in_background=background, jobs=after.queue if after else None,
        )  # fmt: skip

    async def _supervise(self) -> None:
        """Start a new writer on the same queue if the thread died."""
        writer = self._writer
        if writer is None or writer.alive() or writer.stopping:
            return
        logger.error("ledger: the writer thread died; starting a new one")
        self._writer = self._new_writer(writer.wal_in_background, after=writer)
        self._writer.start()

    async def problem(self) -> str | None:
        """None when the ledger takes writes and answers reads, else what is wrong (health)."""
        if self._writer is not None and not self._writer.alive():
            return "the ledger's writer thread is not running"
        try:
            await asyncio.wait_for(self._write(lambda c: None), timeout=5)
        except TimeoutError:
            if self._writer is not None and not self._writer.alive():
                return "the ledger's writer thread is not running"
            return "the ledger did not take a write within 5 s"
        except Exception as exc:
            return f"the ledger failed a write: {exc}"
        return None

    async def close(self) -> None:
        while self._orphans:  # holds of cancelled callers are released before the writer stops
            await asyncio.gather(*list(self._orphans), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._writer:
            await asyncio.to_thread(self._writer.stop)
        if self._pg:
            await self._pg.close()
        if self._engine:
            await self._engine.dispose()

    def address(self) -> tuple[str, str]:
        """Where another process finds this ledger: ("sqlite", path) or ("postgres", dsn)."""
        if self.sqlite:
            return "sqlite", self._sqlite_path()
        return "postgres", make_url(self.url).set(drivername="postgresql").render_as_string(
            hide_password=False
        )

    def _sqlite_path(self) -> str:
        database = make_url(self.url).database
        assert database, "a SQLite ledger needs a file"
        return database

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:  # keep the loop alive; the next round retries
                logger.exception("ledger background job %s failed", job.__name__)

    async def _sign_when_due(self) -> None:
        """Sign a checkpoint once the newest entries have waited `checkpoint_every_s` for one,
        even when no further write comes to trigger it (SQLite signs at commits): receipts
        only read, so they need a checkpoint that covers them."""
        head = await self._read(lambda c: c.one(sequencer.HEAD))
        assert head is not None
        size, signed_size, signed_us = head[0], head[2], head[3]
        if size > signed_size and self.clock() - signed_us >= self.signer.every_us:
            await self._write(lambda c: None)  # a commit: the sequencer signs what is due

    async def _wal_checkpoint(self) -> None:
        """Copy the WAL into the database file off the writer's path (it does not auto-checkpoint)."""
        path = self._sqlite_path()

        def run() -> None:
            raw = sqlite.connect(path, self._synchronous)
            try:
                raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                raw.close()

        await asyncio.to_thread(run)

    # Running operations -------------------------------------------------------------------------

    async def _write(self, op: Op[R], if_abandoned: Callable[[R], None] | None = None) -> R:
        """Run `op` in a write transaction; it runs to its end even if the caller is cancelled,
        and then its result goes to `if_abandoned`.

        On SQLite a queued operation is the writer thread's: the caller's cancellation only stops
        the waiting (no task is made for it: a task and a shield per operation cost ~14% of the
        throughput at 64 clients, bench/ledger.py)."""
        if self._writer is None:
            return await outlive_caller(self._write_pg(op), if_abandoned)
        waiting = sqlite.Waiting(asyncio.get_running_loop())
        self._writer.submit(op, waiting)
        try:
            result: R = await waiting.waiter
            return result
        except asyncio.CancelledError:
            waiting.abandon(if_abandoned)
            raise

    async def _write_pg(self, op: Op[R]) -> R:
        assert self._engine is not None
        for attempt in range(5):
            try:
                async with self._engine.begin() as conn:
                    return await conn.run_sync(lambda c: op(SaDb(c)))
            except DBIntegrityError:
                # A concurrent request with the same id or hold won the race: run again to see it.
                if attempt == 4:
                    raise
            except DBAPIError as exc:
                if "deadlock" not in str(exc).lower() or attempt == 4:
                    raise
        raise AssertionError("unreachable")

    async def _read(self, op: Op[R], snapshot: bool = False) -> R:
        """Run a read-only `op`; with `snapshot`, all its statements see one moment of the database
        (a read transaction on SQLite, REPEATABLE READ on PostgreSQL)."""
        if self.sqlite:
            path = self._sqlite_path()

            def run() -> R:
                raw = sqlite.connect(path, "NORMAL")
                try:
                    if snapshot:
                        raw.execute("BEGIN")
                    return op(SqliteDb(raw))
                finally:
                    raw.close()

            return await asyncio.to_thread(run)
        assert self._engine is not None
        async with self._engine.connect() as conn:
            if snapshot:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            return await conn.run_sync(lambda c: op(SaDb(c)))

    def _after_commit(self, checkpoints: list[log.Checkpoint]) -> None:
        """Checkpoints leave the database: a line in a file beside it, and a log line. They are
        committed already: a file that cannot be written is logged, and the ledger goes on."""
        for cp in checkpoints:
            logger.info("ledger checkpoint %s", cp.to_json())
        if not checkpoints:
            return
        try:
            with self.checkpoint_file.open("a") as f:
                f.writelines(cp.to_json() + "\n" for cp in checkpoints)
        except OSError as exc:
            logger.error(
                "ledger: checkpoints up to size %d could not be written outside the database "
                "(%s): %s; they are in the database and in this log",
                checkpoints[-1].size, self.checkpoint_file, exc,
            )  # fmt: skip


async def outlive_caller(work: Awaitable[T], if_abandoned: Callable[[T], None] | None = None) -> T:
    """Await `work`, which runs to its end even if our caller is cancelled meanwhile; then its
    result goes to `if_abandoned` (a hold nobody waits for is released)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:

        def abandoned(done: asyncio.Future[T]) -> None:
            if done.cancelled() or done.exception() is not None:
                return  # it did not happen, or refused: nothing to undo
            if if_abandoned is not None:
                if_abandoned(done.result())

        task.add_done_callback(abandoned)
        raise


def log_failure(what: str) -> Callable[[asyncio.Future[Any]], None]:
    def check(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and (exc := done.exception()) is not None:
            logger.error("ledger: %s failed: %s", what, exc)

    return check

"""The ledger's API over a database: SQLite (its own file, the default) or PostgreSQL, alike.

SQLite: operations queue for one writer thread that commits them in groups (`credits/sqlite.py`);
the log is appended in the same transaction. PostgreSQL: reserves and resolutions go in batches to
PL/pgSQL functions (`credits/postgres.py`), everything else runs as one READ COMMITTED transaction
(`ops.py` through SQLAlchemy); a sequencer task appends the log a few times a second, and on demand
before a verify or a receipt. Either way overdrawing is stopped by a conditional update on the
user's row and a CHECK constraint.

Nothing here is state another process needs: every rule lives in the database.

Callers may be cancelled at any moment (a Stop press cancels the chat turn waiting on its hold).
An operation, once asked for, runs to its end whatever happens to its caller: a settle still lands,
and a hold created for a caller that has gone is released at once rather than after its timeout.
The SQLite writer thread is watched by a supervisor task, which restarts it if it dies (its queue
carries over); `problem()` says what is wrong, for the health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from credits import log, ops, postgres, sequencer, sqlite
from credits.errors import (
    CreditsError,
    HoldExpired,
    IdempotencyConflict,
    InsufficientCredits,
    IntegrityError,
    InvalidRequest,
    SettleExceedsHold,
    UnknownHold,
)
from credits.ledger import (
    AccountKind,
    Balance,
    Kind,
    Request,
    Reservation,
    System,
    Transfer,
    canonical_metadata,
    check_amount,
    check_code,
    check_timeout,
    check_transfer_id,
    user_account,
)
from credits.ops import Db, SaDb, SqliteDb

R = TypeVar("R")
Op = Callable[[Db], R]
logger = logging.getLogger("credits")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def day_of(ts_us: int) -> str:
    """The UTC day of a transfer's timestamp, YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts_us / 1e6))


def now_us() -> int:
    return time.time_ns() // 1000


class Ledger:
    """The ledger's operations. Amounts are integer units (see `ledger.UNITS_PER_CREDIT`)."""

    def __init__(
        self,
        url: str,
        data_dir: Path,
        signing_key: log.Ed25519PrivateKey,
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
        self.signer = sequencer.Signer(signing_key, checkpoint_every, int(checkpoint_every_s * 1e6))
        self.public_key = signing_key.public_key()
        # Recorded outside the database at first start; `verify` trusts this key and no other.
        self.pinned_key_file = pinned_key_file or data_dir / "ledger-public-key"
        self.pinned_key = self.public_key
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
        from storage.migrate import upgrade_async

        await upgrade_async(self.url, MIGRATIONS, "ledger_alembic_version")
        self.read_only = read_only
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
        if background:
            self._tasks.append(asyncio.create_task(self._every(1.0, self.expire_holds)))
            if self.sqlite:
                self._tasks.append(asyncio.create_task(self._every(2.0, self._wal_checkpoint)))
                every = min(5.0, self.signer.every_us / 1e6)
                self._tasks.append(asyncio.create_task(self._every(every, self._sign_when_due)))
                self._tasks.append(
                    asyncio.create_task(self._every(self._supervise_every_s, self._supervise))
                )
            if not self.sqlite:
                self._tasks.append(asyncio.create_task(self._every(0.2, self.sequence)))

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
            return await _outlive_caller(self._write_pg(op), if_abandoned)
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

    # Operations ---------------------------------------------------------------------------------

    async def open_account(self, user: str) -> None:
        name, now = user_account(user), self.clock()
        await self._write(lambda c: ops.open_account(c, name, AccountKind.USER, now))

    async def grant(
        self,
        user: str,
        amount: int,
        transfer_id: str,
        code: str = "grant",
        metadata: Mapping[str, Any] | None = None,
        source: System = System.PROMOTIONS,
    ) -> Transfer:
        """Give `user` credits from a system account (the welcome bonus is `welcome:<user>`)."""
        req = Request(
            check_transfer_id(transfer_id), Kind.POSTED, check_code(code), check_amount(amount),
            source.value, user_account(user), metadata=canonical_metadata(metadata),
        )  # fmt: skip
        now = self.clock()

        def op(c: Db) -> Transfer:
            ops.open_account(c, req.credit, AccountKind.USER, now)
            return ops.record(c, req, now)

        return await self._write(op)

    async def reserve(
        self,
        user: str,
        amount: int,
        transfer_id: str,
        timeout_s: int,
        code: str = "usage",
        metadata: Mapping[str, Any] | None = None,
    ) -> Reservation:
        """Hold `amount` of the user's credits until settled, released, or `timeout_s` passes
        (zero records free work, so that it shows in the person's usage).

        Says whether this call created the hold. A caller cancelled while the hold is written
        does not leave it behind: once written, it is released at once."""
        req = Request(
            check_transfer_id(transfer_id), Kind.PENDING, check_code(code),
            check_amount(amount, allow_zero=True),
            user_account(user), System.USAGE_REVENUE.value, timeout_s=check_timeout(timeout_s),
            metadata=canonical_metadata(metadata),
        )  # fmt: skip
        if self._pg is not None:  # a batch, then maybe the general path: all of it outlives us
            return await _outlive_caller(self._reserve(req), self._release_abandoned)
        return await self._reserve(req)

    async def _reserve(self, req: Request) -> Reservation:
        now = self.clock()
        if self._pg is not None:
            fast = await self._reserve_pg(req)
            if fast is not None:
                return fast

        def op(c: Db) -> tuple[Transfer, bool] | CreditsError:
            if not ops.has_due_holds(c, req.debit, now):
                return ops.record_new(c, req, now)  # a refusal raises: the whole op is undone
            account = ops.require_account(c, req.debit)
            for hold in ops.due_holds(c, now, account.id):  # stale holds must not block the user
                ops.record(c, _expiry(hold), now)
            try:
                with c.savepoint():  # a refused reserve is undone; the releases above stay
                    return ops.record_new(c, req, now)
            except CreditsError as refused:
                return refused

        def abandoned(result: tuple[Transfer, bool] | CreditsError) -> None:
            if not isinstance(result, CreditsError):
                self._release_abandoned(Reservation(*result))

        result = await self._write(op, abandoned)
        if isinstance(result, CreditsError):
            raise result
        return Reservation(*result)

    def _release_abandoned(self, held: Reservation) -> None:
        """A hold was written for a caller that is gone: give it back now."""
        if not held.created:
            return
        hold_id = held.transfer.transfer_id
        logger.info("ledger: releasing %s, its caller was cancelled", hold_id)
        task = asyncio.ensure_future(self.release(hold_id, {"released": "caller cancelled"}))
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)
        task.add_done_callback(_log_failure(f"releasing {hold_id}"))

    async def _reserve_pg(self, req: Request) -> Reservation | None:
        """`reserve` batched with its neighbours; None when the general path must run."""
        done = await self._reserves.submit(req)
        if done.outcome == "ok":
            return Reservation(Transfer(
                req.transfer_id, Kind.PENDING, req.code, req.amount, req.debit, req.credit,
                done.now_us, None, done.now_us + (req.timeout_s or 0) * 1_000_000, req.metadata,
                None, done.transfer_pk,
            ), True)  # fmt: skip
        if done.outcome == "insufficient":
            available = done.value or 0
            raise InsufficientCredits(
                f"{req.debit} has {available} units available, {req.amount} needed.",
                available=available,
                needed=req.amount,
            )
        found = await self._outcome(done, req)
        return None if found is None else Reservation(found, False)

    async def _outcome(self, done: postgres.Outcome, req: Request) -> Transfer | None:
        """What the hot path's other outcomes mean (None: run the general path)."""
        outcome = done.outcome
        if outcome == "exists":
            return await self.transfer(req.transfer_id)
        if outcome == "conflict":
            raise IdempotencyConflict(
                f"Transfer id {req.transfer_id!r} was already used for a different request."
            )
        if outcome == "unknown":
            raise UnknownHold(f"There is no hold {req.hold!r}.")
        if outcome.startswith("resolved:"):
            raise ops.resolved_error(req.hold, outcome.removeprefix("resolved:"))
        if outcome == "expired":
            raise HoldExpired(f"Hold {req.hold!r} expired; it can no longer be settled.")
        if outcome == "exceeds":
            raise SettleExceedsHold(
                f"Cannot settle {req.amount} units on hold {req.hold!r} of {done.value}."
            )
        return None

    async def settle(
        self, hold_id: str, amount: int, metadata: Mapping[str, Any] | None = None
    ) -> Transfer:
        """Charge a hold at `amount` (not above it); the rest goes back to the user."""
        return await self._resolve(
            hold_id, Kind.POST, check_amount(amount, allow_zero=True), metadata
        )

    async def release(self, hold_id: str, metadata: Mapping[str, Any] | None = None) -> Transfer:
        """Give a hold's credits back; nothing is charged."""
        return await self._resolve(hold_id, Kind.VOID, 0, metadata)

    async def _resolve(
        self, hold_id: str, kind: Kind, amount: int, metadata: Mapping[str, Any] | None
    ) -> Transfer:
        check_transfer_id(hold_id)
        extra = dict(metadata or {})
        canonical_metadata(extra)  # refuse bad metadata before queueing
        if self._pg is not None:  # a batch, then maybe the general path: all of it outlives us
            return await _outlive_caller(self._resolve_now(hold_id, kind, amount, extra))
        return await self._resolve_now(hold_id, kind, amount, extra)  # one write, which does

    async def _resolve_now(
        self, hold_id: str, kind: Kind, amount: int, extra: dict[str, Any]
    ) -> Transfer:
        now = self.clock()
        if self._pg is not None:
            fast = await self._resolve_pg(hold_id, kind, amount, extra)
            if fast is not None:
                return fast

        def op(c: Db) -> Transfer:
            hold = ops.find_hold(c, hold_id)
            debit, credit = (hold.debit.name, hold.credit.name) if hold else ("", "")
            # The resolution carries the hold's metadata (model, kind...) and what settling added.
            meta = canonical_metadata({**(json.loads(hold.metadata) if hold else {}), **extra})
            req = Request(
                f"{hold_id}/{kind.value}", kind, hold.code if hold else "usage", amount,
                debit, credit, hold=hold_id, metadata=meta,
            )  # fmt: skip
            return ops.resolve_hold(c, req, hold, now)[0]

        return await self._write(op)

    async def _resolve_pg(
        self, hold_id: str, kind: Kind, amount: int, extra: dict[str, Any]
    ) -> Transfer | None:
        """Settle or release, batched with its neighbours; None when the general path must run."""
        done = await self._resolutions.submit(postgres.Resolution(hold_id, kind, amount, extra))
        req = done.request
        if req is None:
            raise UnknownHold(f"There is no hold {hold_id!r}.")
        if done.outcome == "ok":
            return Transfer(
                req.transfer_id, kind, req.code, done.value or 0, req.debit, req.credit,
                done.now_us, hold_id, None, req.metadata, None, done.transfer_pk,
            )  # fmt: skip
        return await self._outcome(done, req)

    async def adjust(
        self, user: str, delta: int, reason: str, admin: str, transfer_id: str
    ) -> Transfer:
        """An administrator's correction, either sign; a user never goes below zero."""
        if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
            raise InvalidRequest(
                f"An adjustment is a non-zero whole number of units, not {delta!r}."
            )
        if not reason.strip() or not admin.strip():
            raise InvalidRequest("An adjustment needs a reason and the admin who made it.")
        account = user_account(user)
        debit, credit = (
            (System.ADJUSTMENTS.value, account)
            if delta > 0
            else (account, System.ADJUSTMENTS.value)
        )
        req = Request(
            check_transfer_id(transfer_id), Kind.POSTED, "adjustment", check_amount(abs(delta)),
            debit, credit, metadata=canonical_metadata({"reason": reason, "admin": admin}),
        )  # fmt: skip
        now = self.clock()

        def op(c: Db) -> Transfer:
            ops.require_account(c, account)
            return ops.record(c, req, now)

        return await self._write(op)

    async def release_all(self, user: str, reason: str) -> int:
        """Release every open hold of `user` (their account was disabled mid-work): the work
        still running is charged nothing. Returns how many."""
        name, now = user_account(user), self.clock()

        def op(c: Db) -> int:
            account = ops.find_account(c, name)
            held = ops.due_holds(c, 2**62, account.id) if account else []
            for hold in held:
                meta = canonical_metadata({**hold.meta, "released": reason})
                req = Request(
                    f"{hold.transfer_id}/{Kind.VOID.value}", Kind.VOID, hold.code, 0, hold.debit,
                    hold.credit, hold=hold.transfer_id, metadata=meta,
                )  # fmt: skip
                ops.record(c, req, now)
            return len(held)

        return await self._write(op)

    async def expire_holds(self) -> int:
        """Release every hold past its timeout; returns how many."""
        now = self.clock()

        def op(c: Db) -> int:
            due = ops.due_holds(c, now)
            for hold in due:
                ops.record(c, _expiry(hold), now)
            return len(due)

        return await self._write(op)

    async def sequence(self) -> None:
        """Append what is not yet in the log (PostgreSQL; SQLite appends at every commit)."""
        if self.read_only:
            return
        if self.sqlite:
            await self._write(lambda c: None)
            return
        assert self._engine is not None
        async with self._engine.begin() as conn:
            now = self.clock()
            cps = await conn.run_sync(lambda c: sequencer.sequence(SaDb(c), now, self.signer, True))
        self._after_commit(cps)

    async def checkpoint(self) -> log.Checkpoint:
        """A signed checkpoint of the whole log as it is now (written if the last one is older)."""
        await self.sequence()
        now = self.clock()

        cp, created = await self._write(
            lambda c: sequencer.checkpoint_now(c, now, self.signer, postgres=not self.sqlite)
        )
        if created:
            self._after_commit([cp])
        return cp

    # Reads --------------------------------------------------------------------------------------

    async def balance(self, user: str) -> Balance:
        name = user_account(user)
        account = await self._read(lambda c: ops.find_account(c, name))
        if account is None:
            return Balance(0, 0, 0)
        return Balance.of(account.counters)

    async def transfer(self, transfer_id: str) -> Transfer | None:
        return await self._read(lambda c: ops.get_transfer(c, transfer_id))

    async def history(
        self,
        user: str,
        limit: int = 50,
        before: int | None = None,
        codes: list[str] | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
    ) -> list[Transfer]:
        """The user's transfers, newest first; page with `before`, the last page's final `pk`."""
        name = user_account(user)
        if not 1 <= limit <= 500:
            raise InvalidRequest("A page holds 1 to 500 transfers.")

        def op(c: Db) -> list[Transfer]:
            account = ops.find_account(c, name)
            if account is None:
                return []
            return ops.history(c, account.id, limit, before, codes, since_us, until_us)

        return await self._read(op)

    async def has_account(self, user: str) -> bool:
        name = user_account(user)
        return await self._read(lambda c: ops.find_account(c, name)) is not None

    async def charges(
        self, user: str, since_us: int | None = None, until_us: int | None = None
    ) -> list[Transfer]:
        """What the user paid for work (settled holds and direct charges), newest first; not
        administrators' corrections."""
        account = user_account(user)
        return [
            t
            for t in await self._all_history(user, since_us, until_us)
            if t.debit == account
            and t.kind in (Kind.POST, Kind.POSTED)
            and (t.amount or t.kind is Kind.POST)  # free work settles at zero, and counts
            and t.code != "adjustment"
        ]

    async def usage(
        self, user: str, by: str = "day", since_us: int | None = None, until_us: int | None = None
    ) -> dict[str, int]:
        """Units spent by the user, summed by day (UTC, YYYY-MM-DD) or by a metadata key."""
        totals: dict[str, int] = {}
        for t in await self.charges(user, since_us, until_us):
            key = day_of(t.ts_us) if by == "day" else str(t.meta.get(by, "unknown"))
            totals[key] = totals.get(key, 0) + t.amount
        return dict(sorted(totals.items()))

    async def _all_history(self, user: str, since: int | None, until: int | None) -> list[Transfer]:
        out: list[Transfer] = []
        before = None
        while True:
            page = await self.history(user, 500, before, None, since, until)
            out += page
            if len(page) < 500:
                return out
            before = page[-1].pk


T = TypeVar("T")


async def _outlive_caller(work: Awaitable[T], if_abandoned: Callable[[T], None] | None = None) -> T:
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


def _log_failure(what: str) -> Callable[[asyncio.Future[Any]], None]:
    def check(done: asyncio.Future[Any]) -> None:
        if not done.cancelled() and (exc := done.exception()) is not None:
            logger.error("ledger: %s failed: %s", what, exc)

    return check


def _expiry(hold: Transfer) -> Request:
    return Request(
        f"{hold.transfer_id}/expire", Kind.EXPIRE, hold.code, hold.amount, hold.debit,
        hold.credit, hold=hold.transfer_id,
    )  # fmt: skip

"""The ledger on SQLite: one writer thread per process that runs queued operations in group commits.

Operations queue for the thread; it runs as many as are waiting in one `BEGIN IMMEDIATE` transaction,
each in its own savepoint (so each keeps its own all-or-nothing outcome), appends them to the log in
the same transaction, and commits with one fsync. Other processes on the same file take turns
through SQLite's lock (busy timeout 30 s).

The WAL is copied into the database by a background task (PASSIVE: it never blocks the writer), but
under steady load that copy never catches the writer, so the WAL would never start over and would
grow without bound, and every read would slow down with it. When it passes `WAL_LIMIT_BYTES` the
writer, between two batches, runs a RESTART checkpoint: it finishes the copy (most of it is done),
so the next batch writes the WAL from its start again.

Callers may give up at any moment (a Stop press cancels the chat turn waiting on its hold): an
operation once queued runs all the same, and its outcome goes to the caller's `if_abandoned` hook
instead (`Waiting`). Callers hear of a batch's outcomes in one call on their event loop, not one
wake-up each: at 64 clients that is a sixtieth of the cross-thread traffic. An outcome is a plain
(result, error) pair, set on the loop's own future there: the thread and the loop share nothing
else, so no lock is taken per operation (bench/ledger.py at c64, py-spy --gil: with a
`concurrent.futures.Future` per operation, reading them took a sixth of the loop's time).
Nothing after a commit (the checkpoint file, results) can stop the thread; if it stops
anyway, every caller still waiting gets `WriterStopped` and the store's supervisor starts a new one
on the same queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from credits import log, sequencer
from credits.errors import WriterStopped
from credits.ops import Db, SqliteDb

R = TypeVar("R")
Op = Callable[[Db], R]
logger = logging.getLogger("credits")


class Waiting:
    """A coroutine on an event loop waiting for an operation's outcome (`waiter`). If it gives up
    (`abandon`), the result goes to `if_abandoned` instead, exactly once, whichever comes first on
    the loop: the outcome, or the cancelled coroutine's `abandon` (a Stop cancels the waiter at
    once, but the coroutine hears of it a step later, and the outcome may be told in between)."""

    __slots__ = ("if_abandoned", "loop", "outcome", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Future[Any] = loop.create_future()
        self.if_abandoned: Callable[[Any], None] | None = None
        self.outcome: Outcome | None = None  # once told

    def abandon(self, if_abandoned: Callable[[Any], None] | None) -> None:
        """The waiting coroutine was cancelled (on the loop's thread)."""
        self.if_abandoned = if_abandoned
        waiter = self.waiter
        if waiter.done() and not waiter.cancelled():  # it had its outcome, then was cancelled
            if waiter.exception() is None and if_abandoned is not None:
                if_abandoned(waiter.result())
        elif self.outcome is not None:  # told after the waiter was cancelled, before this
            self._hand_over(self.outcome)

    def tell(self, outcome: Outcome) -> None:
        """The outcome, on the loop's thread (once: a second is ignored)."""
        if self.outcome is not None:
            return
        self.outcome = outcome
        waiter = self.waiter
        if waiter.cancelled():
            self._hand_over(outcome)  # if `abandon` ran already; else `abandon` will
        elif outcome[1] is not None:
            waiter.set_exception(outcome[1])
        else:
            waiter.set_result(outcome[0])

    def _hand_over(self, outcome: Outcome) -> None:
        if outcome[1] is None and self.if_abandoned is not None:
            self.if_abandoned(outcome[0])


Outcome = tuple[Any, BaseException | None]  # an operation's result, or the error it raised
Item = tuple[Op[Any], Waiting]


def _tell_all(told: list[tuple[Waiting, Outcome]]) -> None:
    for waiting, outcome in told:
        try:
            waiting.tell(outcome)
        except Exception:  # one caller's hook must not keep the others from hearing
            logger.exception("ledger: telling a caller its outcome failed")


def connect(path: str, synchronous: str) -> sqlite3.Connection:
    raw = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute(f"PRAGMA synchronous={synchronous}")
    raw.execute("PRAGMA busy_timeout=30000")
    raw.execute("PRAGMA foreign_keys=ON")
    raw.execute(f"PRAGMA journal_size_limit={Writer.WAL_LIMIT_BYTES}")
    return raw


class Writer:
    """One thread that runs queued operations in group commits."""

    MAX_BATCH = 256
    WAL_LIMIT_BYTES = 64 << 20

    def __init__(
        self,
        path: str,
        synchronous: str,
        signer: sequencer.Signer,
        clock: Callable[[], int],
        after_commit: Callable[[list[log.Checkpoint]], None],
        wal_in_background: bool = False,
        jobs: queue.SimpleQueue[Item | None] | None = None,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("LEDGER_SQLITE_SYNCHRONOUS is FULL, NORMAL or EXTRA")
        self.path = path
        self.wal_path = path + "-wal"
        self.synchronous = synchronous
        self.signer = signer
        self.clock = clock
        self.after_commit = after_commit
        self.wal_in_background = wal_in_background
        # A restarted writer takes over its predecessor's queue: nothing queued is lost.
        self.queue: queue.SimpleQueue[Item | None] = jobs or queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self.stopping = False

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Finish everything queued so far, then end the thread."""
        self.stopping = True
        self.queue.put(None)
        self.thread.join()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def submit(self, op: Op[R], waiting: Waiting) -> None:
        """Queue `op`; its outcome is told to `waiting` on its loop."""
        if self.stopping:
            self._tell([(waiting, (None, WriterStopped("The ledger is closed.")))])
            return
        self.queue.put((op, waiting))

    def _run(self) -> None:
        batch: list[Item] = []
        try:
            raw = connect(self.path, self.synchronous)
            if self.wal_in_background:  # the store's background task copies the WAL instead
                raw.execute("PRAGMA wal_autocheckpoint=0")
            db = SqliteDb(raw, log_in_memory=True)
            try:
                while (first := self.queue.get()) is not None:
                    batch = self._take([first])
                    outcomes = self._commit(raw, db, batch)
                    self._tell(outcomes)
                    batch = []
                    self._restart_wal(raw)
            finally:
                raw.close()
        finally:
            # Only reached by a stop, or by something no handler below expected: whoever still
            # waits is told rather than left waiting forever.
            stopped = WriterStopped("The ledger's writer stopped mid-write.")
            self._tell([(waiting, (None, stopped)) for _, waiting in batch])

    @staticmethod
    def _tell(outcomes: list[tuple[Waiting, Outcome]]) -> None:
        """Each event loop hears its callers' outcomes in one call."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Waiting, Outcome]]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, told in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody there waits any more
                loop.call_soon_threadsafe(_tell_all, told)

    def _take(self, batch: list[Item]) -> list[Item]:
        """Up to MAX_BATCH queued operations (a stop's marker stays queued for the loop)."""
        while len(batch) < self.MAX_BATCH:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.queue.put(None)
                break
            batch.append(item)
        return batch

    def _restart_wal(self, raw: sqlite3.Connection) -> None:
        try:
            if self._wal_size() > self.WAL_LIMIT_BYTES:
                raw.execute("PRAGMA wal_checkpoint(RESTART)")
        except sqlite3.Error:  # the next batch tries again
            logger.exception("ledger: restarting the WAL failed")

    def _wal_size(self) -> int:
        try:
            return os.stat(self.wal_path).st_size
        except FileNotFoundError:
            return 0

    def _commit(
        self, raw: sqlite3.Connection, db: SqliteDb, batch: list[Item]
    ) -> list[tuple[Waiting, Outcome]]:
        """Run `batch` in one transaction, each operation in its own savepoint; the outcomes."""
        outcomes: list[tuple[Waiting, Outcome]] = []
        db.take_log()  # whatever a batch that failed to commit left in memory is not in the log
        try:
            raw.execute("BEGIN IMMEDIATE")
            try:
                for op, waiting in batch:
                    try:
                        with db.savepoint():
                            outcomes.append((waiting, (op(db), None)))
                    except Exception as exc:  # this operation alone is undone
                        outcomes.append((waiting, (None, exc)))
                checkpoints = sequencer.sequence(db, self.clock(), self.signer)
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
        except Exception as exc:  # the commit itself failed: nothing in the batch happened
            return [(waiting, (None, exc)) for _, waiting in batch]
        try:
            self.after_commit(checkpoints)
        except Exception:  # committed all the same: the outcomes stand
            logger.exception("ledger: a step after the commit failed")
        return outcomes

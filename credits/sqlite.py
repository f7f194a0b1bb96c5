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

Callers may give up at any moment (a Stop press cancels the chat turn waiting on its hold). An
operation is claimed before it runs (`set_running_or_notify_cancel`): one cancelled while queued is
dropped, one already running finishes, and its outcome is never set on a future that is not waiting
for it. Coroutines waiting on an event loop (`Waiting`) hear of a batch's outcomes in one call on
their loop, not one wake-up each: at 64 clients that is a sixtieth of the cross-thread traffic.
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
from concurrent.futures import Future
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
        self.outcome: Future[Any] | None = None  # once told

    def abandon(self, if_abandoned: Callable[[Any], None] | None) -> None:
        """The waiting coroutine was cancelled (on the loop's thread)."""
        self.if_abandoned = if_abandoned
        waiter = self.waiter
        if waiter.done() and not waiter.cancelled():  # it had its outcome, then was cancelled
            if waiter.exception() is None and if_abandoned is not None:
                if_abandoned(waiter.result())
        elif self.outcome is not None:  # told after the waiter was cancelled, before this
            self._hand_over(self.outcome)

    def tell(self, done: Future[Any]) -> None:
        """The outcome, on the loop's thread."""
        self.outcome = done
        waiter = self.waiter
        if waiter.cancelled():
            self._hand_over(done)  # if `abandon` ran already; else `abandon` will
        elif (error := done.exception()) is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(done.result())

    def _hand_over(self, done: Future[Any]) -> None:
        if done.exception() is None and self.if_abandoned is not None:
            self.if_abandoned(done.result())


Item = tuple[Op[Any], Future[Any], Waiting | None]


def _tell_all(told: list[tuple[Future[Any], Waiting]]) -> None:
    for done, waiting in told:
        try:
            waiting.tell(done)
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

    def submit(self, op: Op[R], waiting: Waiting | None = None) -> Future[R]:
        """Queue `op`; its outcome is set on the future returned, and told to `waiting`."""
        future: Future[R] = Future()
        if self.stopping:
            future.set_exception(WriterStopped("The ledger is closed."))
            self._tell([(op, future, waiting)])
            return future
        self.queue.put((op, future, waiting))
        return future

    def _run(self) -> None:
        batch: list[Item] = []
        try:
            raw = connect(self.path, self.synchronous)
            if self.wal_in_background:  # the store's background task copies the WAL instead
                raw.execute("PRAGMA wal_autocheckpoint=0")
            db = SqliteDb(raw, log_in_memory=True)
            try:
                while (first := self.queue.get()) is not None:
                    batch = self._claim([first])
                    if batch:
                        self._commit(raw, db, batch)
                        self._tell(batch)
                    batch = []
                    self._restart_wal(raw)
            finally:
                raw.close()
        finally:
            # Only reached by a stop, or by something no handler below expected: whoever still
            # waits is told rather than left waiting forever.
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(WriterStopped("The ledger's writer stopped mid-write."))
            self._tell(batch)

    @staticmethod
    def _tell(batch: list[Item]) -> None:
        """Each event loop hears its callers' outcomes in one call."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Future[Any], Waiting]]] = {}
        for _, future, waiting in batch:
            if waiting is not None and future.done():
                by_loop.setdefault(waiting.loop, []).append((future, waiting))
        for loop, told in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody there waits any more
                loop.call_soon_threadsafe(_tell_all, told)

    def _claim(self, batch: list[Item]) -> list[Item]:
        """Up to MAX_BATCH queued operations, each claimed so that it can no longer be cancelled;
        those whose callers gave up while they were queued are dropped (they never ran)."""
        while len(batch) < self.MAX_BATCH:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.queue.put(None)
                break
            batch.append(item)
        return [item for item in batch if item[1].set_running_or_notify_cancel()]

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

    def _commit(self, raw: sqlite3.Connection, db: SqliteDb, batch: list[Item]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        db.take_log()  # whatever a batch that failed to commit left in memory is not in the log
        try:
            raw.execute("BEGIN IMMEDIATE")
            try:
                for op, future, _ in batch:
                    try:
                        with db.savepoint():
                            outcomes.append((future, op(db), None))
                    except Exception as exc:  # this operation alone is undone
                        outcomes.append((future, None, exc))
                checkpoints = sequencer.sequence(db, self.clock(), self.signer)
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
        except Exception as exc:  # the commit itself failed: nothing in the batch happened
            for _, future, _ in batch:
                future.set_exception(exc)
            return
        try:
            self.after_commit(checkpoints)
        except Exception:  # committed all the same: the outcomes stand
            logger.exception("ledger: a step after the commit failed")
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

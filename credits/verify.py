"""Proving the ledger was not altered: `verify`.

`verify` rebuilds everything from the transfers and trusts nothing else: each log entry against its
stored hash, the log's order, the balances (a fold over the entries) against the accounts' counters,
conservation, the Merkle tree against every signed checkpoint, and those checkpoints against the copy
kept outside the database. It names the first entry or checkpoint that does not hold.

Checkpoints count only under the pinned public key (recorded outside the database at the ledger's
first start, or given by the operator): a history rewritten and re-signed with another key fails,
naming the key. Each checkpoint names its ledger in its origin, so lines of the outside file that
belong to another ledger are reported as such, not as tampering. The reading of a consistent
snapshot (`Snapshot`) is shared with the audit report (credits/report.py).

Its size is one verification: each check a function, run over one snapshot in order.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from credits import log, replay
from credits.ledger import Books, Counters, System
from credits.ops import Db
from credits.store import Ledger

logger = logging.getLogger(__name__)


@dataclass
class Report:
    entries: int = 0
    accounts: int = 0
    checkpoints: int = 0
    root: str = ""
    seconds: float = 0.0
    split: int | None = None  # where the log was cut for a helper process to replay half
    problems: list[str] = field(default_factory=list)
    # Worth saying, not wrong (lines of another ledger in the outside file).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.ok:
            return (
                f"ledger verified: {self.entries} entries, {self.accounts} accounts, "
                f"{self.checkpoints} checkpoints, root {self.root[:16]}... ({self.seconds:.2f} s)"
            )
        return "ledger NOT verified: " + self.problems[0]


# Transfers committed but not yet in the log, in the order the sequencer will append them.
QUEUED = (
    "SELECT t.transfer_id, t.kind, t.amount, t.debit_id, t.credit_id, h.transfer_id "
    "FROM ledger_log_queue q JOIN ledger_transfers t ON t.pk = q.transfer_pk "
    "LEFT JOIN ledger_transfers h ON h.pk = t.hold_pk ORDER BY q.transfer_pk"  # the queue drives
)


@dataclass
class Snapshot:
    """Everything but the entries, read in the same transaction as them."""

    names: dict[int, str]
    counters: dict[str, Counters]
    owed: dict[str, int]
    checkpoints: list[log.Checkpoint]
    head_size: int
    frontier: list[bytes]


def snapshot(db: Db) -> Snapshot:
    names: dict[int, str] = {}
    counters: dict[str, Counters] = {}
    owed: dict[str, int] = {}
    for r in db.all(
        "SELECT id, name, debits_pending, debits_posted, credits_pending, credits_posted, owed "
        "FROM ledger_accounts"
    ):
        names[r[0]] = r[1]
        counters[r[1]] = Counters(r[2], r[3], r[4], r[5])
        owed[r[1]] = r[6]
    cps = [
        log.Checkpoint(r[0], bytes(r[1]), r[2], r[3], bytes(r[4]), r[5])
        for r in db.all(
            "SELECT size, root, timestamp_us, key_id, signature, origin FROM ledger_checkpoints "
            "ORDER BY size"
        )
    ]
    head = db.one("SELECT size, frontier FROM ledger_log_head WHERE id = 1")
    assert head is not None
    frontier = [bytes.fromhex(h) for h in json.loads(head[1])]
    return Snapshot(names, counters, owed, cps, head[0], frontier)


# Below this many entries the log is replayed in one piece: a helper process would cost more than
# it saves (it takes ~50 ms to start; a replay ~5 us an entry).
SPLIT_FROM = 40_000


async def verify(
    ledger: Ledger, split_from: int = SPLIT_FROM, public_key: Ed25519PublicKey | None = None
) -> Report:
    """Check everything; the report's first problem names where the ledger stops holding.

    Checkpoints are checked against `public_key` if given (the operator's own copy), else the key
    pinned at the ledger's first start.

    A log of `split_from` entries or more is replayed in two halves at once, the later one by a
    helper process (`credits.replay`): on two cores, ~1.4 times as fast (1.0 when the other core
    is busy; measured on ~100,000 entries).
    """
    started = time.perf_counter()
    await ledger.sequence()
    # The outside copy is read first: each line in it was committed before it was written, so all
    # must be in the snapshot taken next.
    outside = _outside_copy(ledger.checkpoint_file)
    address = ledger.address()
    trusted = Trust(
        public_key or ledger.pinned_key, ledger.ledger_id, ledger.sqlite, ledger.legacy_origin
    )

    def check(db: Db) -> Report:
        return _verify(db, trusted, outside, address, split_from)

    report = await ledger._read(check, snapshot=True)
    report.seconds = time.perf_counter() - started
    return report


def _outside_copy(path: Path) -> tuple[str, list[str]]:
    """The checkpoint file's name and lines (none when there is no file)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return path.name, [line for line in lines if line.strip()]


@dataclass(frozen=True)
class Trust:
    """What verify takes as given: the key checkpoints must be signed by, and the ledger's id."""

    public: Ed25519PublicKey
    ledger_id: str
    sqlite: bool = True  # SQLite appends every transfer at its commit: nothing may wait queued
    legacy_origin: bool = False  # this ledger signed under the bare origin before it had an id

    def owns(self, origin: str) -> bool:
        """Whether a checkpoint with this origin is this ledger's."""
        return origin == log.origin_of(self.ledger_id) or (
            self.legacy_origin and origin == log.ORIGIN
        )


def _verify(
    db: Db,
    trust: Trust,
    outside: tuple[str, list[str]],
    address: tuple[str, str] | None = None,
    split_from: int = SPLIT_FROM,
) -> Report:
    """All the checks, over one consistent snapshot of the database."""
    snap = snapshot(db)
    report = Report(accounts=len(snap.counters), checkpoints=len(snap.checkpoints))
    last = db.one("SELECT max(seq) FROM ledger_log")
    assert last is not None
    whole: _Replayed | None = None
    if address is not None and (last[0] or 0) >= split_from:
        whole = _replay_halves(db, snap, address, last[0])
    if whole is None:  # a short log, or a problem in a half: one piece names the first bad entry
        whole = _replay_whole(db, snap)
    report.split = whole.split
    report.entries = whole.size
    report.root = log.frontier_root(whole.frontier).hex()
    if whole.problem:
        report.problems.append(whole.problem)
    if not report.problems:
        _check_unlogged(db, whole.size, trust, report)
    if not report.problems:  # checkpoints only mean something over an intact log
        _check_checkpoints(snap, whole, trust, report)
        _check_outside_copy(outside, snap, trust, report)
        _check_head(snap, whole, report)
    _check_balances(db, snap, whole.books, report)
    _check_owed(db, snap, report)
    return report


@dataclass
class _Replayed:
    """The whole log replayed: the fold, the tree's frontier, its roots at the checkpoints' sizes."""

    books: Books
    size: int
    frontier: list[bytes]
    roots: dict[int, bytes]
    problem: str | None
    split: int | None = None  # where the log was cut in two, when it was


def _roots(prefix: list[bytes], size: int, walk: replay.Walk) -> dict[int, bytes]:
    return {n: log.frontier_root(log.join_frontier(prefix, size, at)) for n, at in walk.at.items()}


def _replay_whole(db: Db, snap: Snapshot) -> _Replayed:
    wanted = {cp.size for cp in snap.checkpoints}
    walk = replay.replay(
        db.rows(replay.entries_sql(1)), snap.names, 1, wanted, replay.hold_ids(db.one)
    )
    return _Replayed(walk.books, walk.size, walk.nodes, _roots([], 0, walk), walk.problem)


def _replay_halves(db: Db, snap: Snapshot, address: tuple[str, str], last: int) -> _Replayed | None:
    """Entries 1..last in two halves at once, joined; None when either half (or their join) does
    not hold, for a replay in one piece to name the first bad entry."""
    # The helper's half is shorter by about what this process replays while the helper starts.
    cut = last // 2 + min(last // 20, 4_000)
    wanted = {cp.size for cp in snap.checkpoints}
    helper = replay.start_helper(
        replay.Request(address, cut + 1, last, {n for n in wanted if n > cut})
    )
    try:
        entries = db.rows(replay.entries_sql(1, cut))
        walk = replay.replay(entries, snap.names, 1, wanted, replay.hold_ids(db.one))
        later = replay.helper_walk(helper)
    except RuntimeError:
        logger.exception("ledger verify: replaying in one piece")
        return None
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait()
    if walk.problem or later.problem or walk.size != cut:
        return None
    try:
        walk.books.join(later.books)
    except ValueError:
        return None
    roots = _roots([], 0, walk) | _roots(walk.nodes, cut, later)
    frontier = log.join_frontier(walk.nodes, cut, later.subtrees)
    return _Replayed(walk.books, later.size, frontier, roots, None, split=cut)


def _check_unlogged(db: Db, size: int, trust: Trust, report: Report) -> None:
    """Every transfer is in the log or queued for it (counted; searched for only on a miss). The
    queue is checked, not trusted: a queued row must name a transfer the log does not have, and on
    SQLite (which appends every transfer when it commits) nothing may be queued at all."""
    transfers = db.one("SELECT count(*) FROM ledger_transfers")
    queued = db.one("SELECT count(*) FROM ledger_log_queue")
    assert transfers is not None and queued is not None
    if queued[0]:
        logged = db.one(
            "SELECT t.transfer_id FROM ledger_log_queue q "
            "JOIN ledger_transfers t ON t.pk = q.transfer_pk "
            "JOIN ledger_log l ON l.transfer_pk = q.transfer_pk LIMIT 1"
        )
        if logged is not None:
            report.problems.append(
                f"transfer {logged[0]!r} is queued for the log but in it already"
            )
            return
        if trust.sqlite:
            report.problems.append(
                f"{queued[0]} transfer(s) wait in the log queue, which SQLite never leaves filled"
            )
            return
    if transfers[0] == size + queued[0]:
        return
    missing = db.one(
        "SELECT t.transfer_id FROM ledger_transfers t "
        "LEFT JOIN ledger_log l ON l.transfer_pk = t.pk "
        "LEFT JOIN ledger_log_queue q ON q.transfer_pk = t.pk "
        "WHERE l.seq IS NULL AND q.transfer_pk IS NULL LIMIT 1"
    )
    what = repr(missing[0]) if missing else "(unknown)"
    report.problems.append(f"transfer {what} is missing from the log")


def _check_balances(db: Db, snap: Snapshot, books: Books, report: Report) -> None:
    """Conservation, and every account's counters against the fold of its transfers.

    Transfers committed but not yet appended to the log (PostgreSQL's sequencer runs after the
    commit) already count in their user's row, but not yet in the system accounts' rows, which the
    sequencer keeps: users are compared with the fold carried on over those transfers.
    """
    if not books.conserved():
        report.problems.append("debits and credits do not balance across the ledger")
    logged = books.counters
    names = snap.names
    for tid, kind, amount, debit, credit, hold in db.rows(QUEUED):
        try:
            books.add(tid, kind, amount, names.get(debit, "?"), names.get(credit, "?"), hold)
        except ValueError as exc:
            report.problems.append(f"transfer waiting for the log: {exc}")
            return
    with_queued = books.counters
    for name, counters in snap.counters.items():
        folded = with_queued if name.startswith("user:") else logged
        rebuilt = folded.get(name, Counters())
        if counters != rebuilt:
            report.problems.append(
                f"account {name}: counters {counters} differ from the transfers' {rebuilt}"
            )
            break


def _check_owed(db: Db, snap: Snapshot, report: Report) -> None:
    """What each account owes against its claw-backs (their `owed`) less its covers (code owed)."""
    rebuilt: dict[str, int] = {}
    for debit, code, amount, metadata in db.rows(
        "SELECT d.name, t.code, t.amount, t.metadata FROM ledger_transfers t "
        "JOIN ledger_accounts d ON d.id = t.debit_id JOIN ledger_accounts c ON c.id = t.credit_id "
        "WHERE c.name = :clawbacks",
        {"clawbacks": System.CLAWBACKS.value},
    ):
        change = -amount if code == "owed" else int(json.loads(metadata).get("owed", 0))
        rebuilt[debit] = rebuilt.get(debit, 0) + change
    for name, owed in snap.owed.items():
        if owed != rebuilt.get(name, 0):
            report.problems.append(
                f"account {name}: owes {owed} units, its claw-backs and covers say "
                f"{rebuilt.get(name, 0)}"
            )
            break


def _check_checkpoints(snap: Snapshot, walk: _Replayed, trust: Trust, report: Report) -> None:
    """Every signed checkpoint: its key, its ledger, its signature, and its root against the tree
    rebuilt at its size."""
    pinned = log.key_id(trust.public)
    for cp in snap.checkpoints:
        if cp.key_id != pinned:
            report.problems.append(
                f"checkpoint at size {cp.size} is signed by key {cp.key_id}, not by the pinned "
                f"key {pinned}"
            )
            return
        if not trust.owns(cp.origin):
            report.problems.append(
                f"checkpoint at size {cp.size} names another ledger ({cp.origin!r})"
            )
            return
        if not log.signature_ok(cp, trust.public):
            report.problems.append(f"checkpoint at size {cp.size}: the signature does not verify")
            return
        if cp.size > walk.size:
            report.problems.append(
                f"checkpoint at size {cp.size} covers more entries than the log has "
                f"({walk.size}): the log was truncated"
            )
            return
        if walk.roots[cp.size] != cp.root:
            report.problems.append(
                f"checkpoint at size {cp.size}: the log's root differs from the signed one"
            )
            return


def _check_head(snap: Snapshot, walk: _Replayed, report: Report) -> None:
    """The stored head (size and frontier, from which new entries extend the tree) is derived."""
    if snap.head_size != walk.size or snap.frontier != walk.frontier:
        report.problems.append(
            f"the log head (size {snap.head_size}) does not match the log ({walk.size} entries)"
        )


def _check_outside_copy(
    outside: tuple[str, list[str]], snap: Snapshot, trust: Trust, report: Report
) -> None:
    """Every checkpoint of this ledger written to the file must still be in the database,
    unchanged; every line must be a checkpoint signed by the pinned key. Lines of another ledger
    (a file left from an earlier install) are noted, not held against this one."""
    name, lines = outside
    inside = {cp.size: cp for cp in snap.checkpoints}
    pinned = log.key_id(trust.public)
    foreign: set[str] = set()
    for number, line in enumerate(lines, 1):
        try:
            copy = log.Checkpoint.from_json(line)
        except (ValueError, LookupError, TypeError):
            report.problems.append(f"line {number} of {name} is not a checkpoint")
            return
        if not trust.owns(copy.origin):
            foreign.add(copy.origin)
            continue
        kept = inside.get(copy.size)
        if kept == copy:
            continue  # the same signed checkpoint: `_check_checkpoints` verified its signature
        if copy.key_id != pinned:
            report.problems.append(
                f"line {number} of {name} (checkpoint at size {copy.size}) is signed by key "
                f"{copy.key_id}, not by the pinned key {pinned}"
            )
            return
        if not log.signature_ok(copy, trust.public):
            report.problems.append(
                f"line {number} of {name} (checkpoint at size {copy.size}): the signature does "
                "not verify"
            )
            return
        if kept is None:
            report.problems.append(
                f"checkpoint at size {copy.size} (in {name}) is missing from the database"
            )
            return
        if kept.root != copy.root:
            report.problems.append(f"checkpoint at size {copy.size} differs from the file's copy")
            return
    for origin in sorted(foreign):
        report.notes.append(
            f"{name} also holds checkpoints of another ledger ({origin}), left from an earlier "
            "install; they were not checked against this one"
        )

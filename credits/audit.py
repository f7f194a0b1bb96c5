"""Proving the ledger was not altered: `verify`, receipts, and the audit report.

`verify` rebuilds everything from the transfers and trusts nothing else: each log entry against its
stored hash, the log's order, the balances (a fold over the entries) against the accounts' counters,
conservation, the Merkle tree against every signed checkpoint, and those checkpoints against the copy
kept outside the database. It names the first entry or checkpoint that does not hold.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from credits import log
from credits.errors import UnknownTransfer
from credits.ledger import Books, Counters, leaf_bytes
from credits.ops import Db
from credits.store import Ledger


@dataclass
class Report:
    entries: int = 0
    accounts: int = 0
    checkpoints: int = 0
    root: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

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


@dataclass
class _Snapshot:
    entries: list[Sequence[Any]]
    counters: dict[str, Counters]
    checkpoints: list[log.Checkpoint]
    head_size: int
    frontier: list[bytes]
    unlogged: str | None  # a transfer with no log entry (none after sequencing, unless tampered)


def _snapshot(db: Db) -> _Snapshot:
    # Rows come out in the shape the checks read: (seq, leaf hash, id, kind, code, amount,
    # debit name, credit name, hold id, expires, ts, metadata).
    entries: list[Sequence[Any]] = db.all(
        "SELECT l.seq, l.leaf_hash, t.transfer_id, t.kind, t.code, t.amount, d.name, c.name, "
        "h.transfer_id, t.expires_us, t.ts_us, t.metadata FROM ledger_log l "
        "LEFT JOIN ledger_transfers t ON t.pk = l.transfer_pk "
        "LEFT JOIN ledger_accounts d ON d.id = t.debit_id "
        "LEFT JOIN ledger_accounts c ON c.id = t.credit_id "
        "LEFT JOIN ledger_transfers h ON h.pk = t.hold_pk ORDER BY l.seq"
    )
    counters = {
        r[0]: Counters(r[1], r[2], r[3], r[4])
        for r in db.all(
            "SELECT name, debits_pending, debits_posted, credits_pending, credits_posted "
            "FROM ledger_accounts"
        )
    }
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
    unlogged = db.one(
        "SELECT t.transfer_id FROM ledger_transfers t "
        "LEFT JOIN ledger_log l ON l.transfer_pk = t.pk WHERE l.seq IS NULL LIMIT 1"
    )
    return _Snapshot(entries, counters, cps, head[0], frontier, unlogged[0] if unlogged else None)


async def verify(ledger: Ledger) -> Report:
    """Check everything; the report's first problem names where the ledger stops holding."""
    started = time.perf_counter()
    await ledger.sequence()
    snap = await ledger._read(_snapshot)
    report = Report(accounts=len(snap.counters), checkpoints=len(snap.checkpoints))
    books, leaves = _check_entries(snap, report)
    report.entries = len(leaves)
    if not report.problems:  # checkpoints only mean something over an intact log
        _check_tree(snap, leaves, ledger.public_key, report)
        _check_outside_copy(ledger, snap, report)
        _check_head(snap, leaves, report)
    _check_balances(snap, books, report)
    report.seconds = time.perf_counter() - started
    return report


def _check_entries(snap: _Snapshot, report: Report) -> tuple[Books, list[bytes]]:
    """Each entry in order, against its hash and the ledger's rules; the fold and the leaves."""
    books = Books()
    leaves: list[bytes] = []
    for expected_seq, e in enumerate(snap.entries, start=1):
        seq, stored, tid = e[0], e[1], e[2]
        if seq != expected_seq:
            report.problems.append(f"log entry {expected_seq} is missing (next is {seq})")
            return books, leaves
        if e[3] is None:
            report.problems.append(f"log entry {seq}: its transfer row is missing (deleted)")
            return books, leaves
        leaf = log.leaf_hash(
            leaf_bytes(seq, tid, e[3], e[4], e[5], e[6], e[7], e[8], e[9], e[10], e[11])
        )
        if leaf != bytes(stored):
            report.problems.append(
                f"log entry {seq} ({tid}): the transfer does not match its log hash "
                "(altered, or moved from another position)"
            )
            return books, leaves
        try:
            books.add(tid, e[3], e[5], e[6], e[7], e[8])
        except ValueError as exc:
            report.problems.append(f"log entry {seq}: {exc}")
            return books, leaves
        leaves.append(leaf)
    if snap.unlogged is not None:
        report.problems.append(f"transfer {snap.unlogged!r} is missing from the log")
    return books, leaves


def _check_balances(snap: _Snapshot, books: Books, report: Report) -> None:
    """Conservation, and every account's counters against the fold of its transfers."""
    if not books.conserved():
        report.problems.append("debits and credits do not balance across the ledger")
    folded = books.counters
    for name, counters in snap.counters.items():
        rebuilt = folded.get(name, Counters())
        if counters != rebuilt:
            report.problems.append(
                f"account {name}: counters {counters} differ from the transfers' {rebuilt}"
            )
            break


def _check_tree(
    snap: _Snapshot, leaves: list[bytes], public: Ed25519PublicKey, report: Report
) -> None:
    """The tree over the entries against every signed checkpoint, then the stored head."""
    frontier: list[bytes] = []
    roots: dict[int, bytes] = {}
    wanted = {cp.size for cp in snap.checkpoints}
    for size, leaf in enumerate(leaves):
        log.frontier_push(frontier, size, leaf)
        if size + 1 in wanted:
            roots[size + 1] = log.frontier_root(frontier)
    root = log.frontier_root(frontier)
    report.root = root.hex()
    for cp in snap.checkpoints:
        if not log.signature_ok(cp, public):
            report.problems.append(f"checkpoint at size {cp.size}: the signature does not verify")
            return
        if cp.size > len(leaves):
            report.problems.append(
                f"checkpoint at size {cp.size} covers more entries than the log has "
                f"({len(leaves)}): the log was truncated"
            )
            return
        if roots[cp.size] != cp.root:
            report.problems.append(
                f"checkpoint at size {cp.size}: the log's root differs from the signed one"
            )
            return


def _check_head(snap: _Snapshot, leaves: list[bytes], report: Report) -> None:
    """The stored head (size and frontier, from which new entries extend the tree) is derived."""
    if snap.head_size != len(leaves) or report.root != log.frontier_root(snap.frontier).hex():
        report.problems.append(
            f"the log head (size {snap.head_size}) does not match the log ({len(leaves)} entries)"
        )


def _check_outside_copy(ledger: Ledger, snap: _Snapshot, report: Report) -> None:
    """Every checkpoint written to the file must still be in the database, unchanged."""
    if not ledger.checkpoint_file.exists():
        return
    inside = {cp.size: cp for cp in snap.checkpoints}
    for line in ledger.checkpoint_file.read_text().splitlines():
        if not line.strip():
            continue
        outside = log.Checkpoint.from_json(line)
        if not log.signature_ok(outside, ledger.public_key):
            continue  # another key's or a damaged line: not evidence either way
        kept = inside.get(outside.size)
        if kept is None:
            report.problems.append(
                f"checkpoint at size {outside.size} (in {ledger.checkpoint_file.name}) is missing "
                "from the database"
            )
            return
        if kept.root != outside.root:
            report.problems.append(
                f"checkpoint at size {outside.size} differs from the file's copy"
            )
            return


# Receipts ---------------------------------------------------------------------------------------


async def receipt(ledger: Ledger, transfer_id: str) -> dict[str, Any]:
    """Proof that a transfer is in the log: its entry, an inclusion proof and a signed checkpoint."""
    cp = await ledger.checkpoint()
    snap = await ledger._read(_snapshot)
    index = next((i for i, e in enumerate(snap.entries) if e[2] == transfer_id), None)
    if index is None or index >= cp.size:
        raise UnknownTransfer(f"There is no transfer {transfer_id!r} in the log.")
    e = snap.entries[index]
    entry = leaf_bytes(e[0], e[2], e[3], e[4], e[5], e[6], e[7], e[8], e[9], e[10], e[11])
    leaves = [bytes(x[1]) for x in snap.entries[: cp.size]]
    return {
        "entry": entry.decode(),
        "index": index,
        "proof": [h.hex() for h in log.inclusion_proof(index, leaves)],
        "checkpoint": json.loads(cp.to_json()),
        "public_key": log.public_key_b64(ledger.public_key),
    }


def check_receipt(data: dict[str, Any], public: Ed25519PublicKey) -> bool:
    """True when the receipt's entry is in the tree its checkpoint signs, under `public`."""
    cp = log.Checkpoint.from_json(json.dumps(data["checkpoint"]))
    if not log.signature_ok(cp, public):
        return False
    leaf = log.leaf_hash(data["entry"].encode())
    proof = [bytes.fromhex(h) for h in data["proof"]]
    return log.verify_inclusion(leaf, int(data["index"]), cp.size, proof, cp.root)


# The audit report -------------------------------------------------------------------------------


async def audit(ledger: Ledger) -> dict[str, Any]:
    """Totals per account kind and code, holds outstanding, checkpoints."""
    await ledger.sequence()
    snap = await ledger._read(_snapshot)
    by_code: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "units": 0})
    open_holds: dict[str, int] = {}
    for e in snap.entries:
        kind, code, amount, hold = e[3], e[4], e[5], e[8]
        by_code[f"{kind}:{code}"]["count"] += 1
        by_code[f"{kind}:{code}"]["units"] += amount
        if kind == "pending":
            open_holds[e[2]] = amount
        elif hold is not None:
            open_holds.pop(hold, None)
    kinds: dict[str, dict[str, int]] = defaultdict(lambda: {"accounts": 0, "balance": 0, "held": 0})
    for name, c in snap.counters.items():
        k = kinds["user" if name.startswith("user:") else name]
        k["accounts"] += 1
        k["balance"] += c.balance
        k["held"] += c.held
    latest = snap.checkpoints[-1] if snap.checkpoints else None
    return {
        "entries": len(snap.entries),
        "accounts": dict(kinds),
        "transfers_by_kind_and_code": dict(by_code),
        "holds_outstanding": {"count": len(open_holds), "units": sum(open_holds.values())},
        "checkpoints": len(snap.checkpoints),
        "latest_checkpoint": json.loads(latest.to_json()) if latest else None,
    }

"""Appending to the tamper-evident log, and signing checkpoints of it.

New transfers wait in `ledger_log_queue` (PostgreSQL), or are handed over in memory by the
operations of the same group commit (SQLite, `ops.SqliteDb`); `sequence` appends them to the log
with their Merkle leaf hashes, keeps the system accounts' counters (operations only touch user
rows), and writes a signed checkpoint when one is due. It runs under the log head's row lock, so
one sequencer at a time appends, whatever the process: inside each group commit on SQLite, as a
task on PostgreSQL.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from credits import log
from credits.ledger import AccountKind, leaf_bytes
from credits.ops import Db


@dataclass(frozen=True)
class Signer:
    key: log.Ed25519PrivateKey
    every_entries: int
    every_us: int
    origin: str = log.ORIGIN  # names the ledger (`log.origin_of`)


HEAD = "SELECT size, frontier, checkpoint_size, checkpoint_us FROM ledger_log_head WHERE id = 1"
QUEUED = (
    "SELECT t.pk, t.transfer_id, t.kind, t.code, t.amount, d.name, c.name, h.transfer_id, "
    "t.expires_us, t.ts_us, t.metadata, d.id, d.kind, c.id, c.kind, h.amount "
    "FROM ledger_log_queue q JOIN ledger_transfers t ON t.pk = q.transfer_pk "
    "JOIN ledger_accounts d ON d.id = t.debit_id JOIN ledger_accounts c ON c.id = t.credit_id "
    "LEFT JOIN ledger_transfers h ON h.pk = t.hold_pk "
    "ORDER BY q.transfer_pk"  # not t.pk: SQLite would scan every transfer to give that order
)


def sequence(db: Db, now_us: int, signer: Signer, postgres: bool = False) -> list[log.Checkpoint]:
    """Append queued transfers to the log, keep system counters, checkpoint when due.

    Entries go in the order of their rows among what is committed when it runs (on SQLite, exactly
    commit order). It runs under the log head's row lock: one sequencer at a time, any process.
    """
    head = db.one(HEAD + (" FOR UPDATE" if postgres else ""))
    assert head is not None
    size, frontier = head[0], [bytes.fromhex(h) for h in json.loads(head[1])]
    queued = db.all(QUEUED)
    rows = [*queued, *db.take_log()]  # those in memory are this transaction's: the last pks
    if rows:
        entries = []
        deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for r in rows:
            size += 1
            leaf = log.leaf_hash(
                leaf_bytes(size, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10])
            )
            log.frontier_push(frontier, size - 1, leaf)
            entries.append({"seq": size, "pk": r[0], "leaf": leaf})
            _system_deltas(deltas, r[2], r[4], r[15], (r[11], r[12]), (r[13], r[14]))
        db.many(
            "INSERT INTO ledger_log (seq, transfer_pk, leaf_hash) VALUES (:seq, :pk, :leaf)",
            entries,
        )
        if queued:
            db.many(
                "DELETE FROM ledger_log_queue WHERE transfer_pk = :pk",
                [{"pk": r[0]} for r in queued],
            )
        for account_id, (dp, dpo, cp, cpo) in deltas.items():
            db.run(
                "UPDATE ledger_accounts SET debits_pending = debits_pending + :dp, "
                "debits_posted = debits_posted + :dpo, credits_pending = credits_pending + :cp, "
                "credits_posted = credits_posted + :cpo WHERE id = :id",
                {"dp": dp, "dpo": dpo, "cp": cp, "cpo": cpo, "id": account_id},
            )
        db.run(
            "UPDATE ledger_log_head SET size = :size, frontier = :frontier WHERE id = 1",
            {"size": size, "frontier": json.dumps([h.hex() for h in frontier])},
        )
    last_size, last_us = head[2], head[3]
    if last_us == 0 and size > 0:  # the time rule's clock starts with the first entry
        db.run("UPDATE ledger_log_head SET checkpoint_us = :now WHERE id = 1", {"now": now_us})
        last_us = now_us
    due = size - last_size >= signer.every_entries or (
        size > last_size and now_us - last_us >= signer.every_us
    )
    return [write_checkpoint(db, size, frontier, now_us, signer)] if due else []


def _system_deltas(
    deltas: dict[int, list[int]],
    kind: str,
    amount: int,
    held: int | None,
    debit: tuple[int, str],
    credit: tuple[int, str],
) -> None:
    """Counter changes of the system side(s) of one transfer: [dp, dpo, cp, cpo]."""
    for (account_id, account_kind), offset in ((debit, 0), (credit, 2)):
        if account_kind != AccountKind.SYSTEM.value:
            continue
        d = deltas[account_id]
        if kind == "posted":
            d[offset + 1] += amount
        elif kind == "pending":
            d[offset] += amount
        else:
            d[offset] -= held or 0
            if kind == "post":
                d[offset + 1] += amount


def write_checkpoint(
    db: Db, size: int, frontier: list[bytes], now_us: int, signer: Signer
) -> log.Checkpoint:
    cp = log.sign(signer.key, size, log.frontier_root(frontier), now_us, signer.origin)
    db.run(
        "INSERT INTO ledger_checkpoints (size, root, timestamp_us, key_id, signature, origin) "
        "VALUES (:size, :root, :ts, :key, :sig, :origin)",
        {"size": cp.size, "root": cp.root, "ts": cp.timestamp_us, "key": cp.key_id,
         "sig": cp.signature, "origin": cp.origin},
    )  # fmt: skip
    db.run(
        "UPDATE ledger_log_head SET checkpoint_size = :size, checkpoint_us = :now WHERE id = 1",
        {"size": size, "now": now_us},
    )
    return cp


def checkpoint_now(
    db: Db, now_us: int, signer: Signer, postgres: bool
) -> tuple[log.Checkpoint, bool]:
    """A checkpoint of the log as it is, and whether it was just written (False: the latest one
    already covers everything)."""
    head = db.one(HEAD + (" FOR UPDATE" if postgres else ""))
    assert head is not None
    latest = latest_checkpoint(db)
    if latest is not None and latest.size == head[0]:
        return latest, False
    frontier = [bytes.fromhex(h) for h in json.loads(head[1])]
    return write_checkpoint(db, head[0], frontier, now_us, signer), True


def latest_checkpoint(db: Db) -> log.Checkpoint | None:
    row = db.one(
        "SELECT size, root, timestamp_us, key_id, signature, origin FROM ledger_checkpoints "
        "ORDER BY size DESC LIMIT 1"
    )
    if row is None:
        return None
    return log.Checkpoint(row[0], bytes(row[1]), row[2], row[3], bytes(row[4]), row[5])

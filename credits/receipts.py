"""Receipts: proof that one transfer is in the signed log, checkable anywhere.

A receipt is the transfer's log entry, its RFC 9162 inclusion proof and the latest signed checkpoint
that covers it, with the public key. Making one only reads; `check_receipt` needs nothing but the
receipt and the key (`python -m credits check-receipt FILE`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from credits import log, sequencer
from credits.errors import NotYetCheckpointed, UnknownTransfer
from credits.ledger import leaf_bytes
from credits.ops import Db
from credits.store import Ledger


async def receipt(ledger: Ledger, transfer_id: str) -> dict[str, Any]:
    """Proof that a transfer is in the log: its entry, an inclusion proof and the latest signed
    checkpoint. Only reads: `NotYetCheckpointed` when no checkpoint covers the entry yet (the
    ledger signs one every `checkpoint_every_s` seconds while the log grows)."""

    def read(db: Db) -> tuple[Sequence[Any] | None, list[bytes], log.Checkpoint | None]:
        def leaves(start: int, end: int) -> list[bytes]:
            rows = db.all(
                "SELECT leaf_hash FROM ledger_log WHERE seq > :a AND seq <= :b ORDER BY seq",
                {"a": start, "b": end},
            )
            return [bytes(r[0]) for r in rows]

        row = db.one(
            "SELECT l.seq, t.transfer_id, t.kind, t.code, t.amount, d.name, c.name, "
            "h.transfer_id, t.expires_us, t.ts_us, t.metadata FROM ledger_transfers t "
            "JOIN ledger_log l ON l.transfer_pk = t.pk "
            "JOIN ledger_accounts d ON d.id = t.debit_id "
            "JOIN ledger_accounts c ON c.id = t.credit_id "
            "LEFT JOIN ledger_transfers h ON h.pk = t.hold_pk WHERE t.transfer_id = :id",
            {"id": transfer_id},
        )
        cp = sequencer.latest_checkpoint(db)
        if row is None or cp is None or row[0] > cp.size:
            return row, [], cp
        forest = log.Forest(cp.size, leaves, ledger.log_chunks)
        return row, forest.inclusion_proof(row[0] - 1), cp

    row, proof, cp = await ledger._read(read, snapshot=True)
    if row is None:
        raise UnknownTransfer(f"There is no transfer {transfer_id!r} in the log.")
    if cp is None or row[0] > cp.size:
        raise NotYetCheckpointed(
            f"Transfer {transfer_id!r} is in the log, but no signed checkpoint covers it yet; "
            "one is signed within a minute or so. Try again then."
        )
    return {
        "entry": leaf_bytes(*row).decode(),
        "index": row[0] - 1,
        "proof": [h.hex() for h in proof],
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

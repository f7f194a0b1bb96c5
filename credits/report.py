"""The audit report (`python -m credits audit`): totals per account kind and code, holds
outstanding, checkpoints, from one consistent snapshot."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from credits.ops import Db
from credits.store import Ledger
from credits.verify import Snapshot, snapshot


async def audit(ledger: Ledger) -> dict[str, Any]:
    """Totals per account kind and code, holds outstanding, checkpoints."""
    await ledger.sequence()

    def read(db: Db) -> tuple[Snapshot, list[Sequence[Any]]]:
        return snapshot(db), db.all(
            "SELECT t.transfer_id, t.kind, t.code, t.amount, h.transfer_id FROM ledger_log l "
            "JOIN ledger_transfers t ON t.pk = l.transfer_pk "
            "LEFT JOIN ledger_transfers h ON h.pk = t.hold_pk ORDER BY l.seq"
        )

    snap, entries = await ledger._read(read, snapshot=True)
    by_code: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "units": 0})
    open_holds: dict[str, int] = {}
    for tid, kind, code, amount, hold in entries:
        by_code[f"{kind}:{code}"]["count"] += 1
        by_code[f"{kind}:{code}"]["units"] += amount
        if kind == "pending":
            open_holds[tid] = amount
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
        "entries": len(entries),
        "accounts": dict(kinds),
        "transfers_by_kind_and_code": dict(by_code),
        "holds_outstanding": {"count": len(open_holds), "units": sum(open_holds.values())},
        "checkpoints": len(snap.checkpoints),
        "latest_checkpoint": json.loads(latest.to_json()) if latest else None,
    }

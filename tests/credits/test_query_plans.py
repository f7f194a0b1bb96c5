"""The statements a ledger operation or a group commit runs cost the same on a ledger of ten
transfers and of ten million: on SQLite none of them scans a table of transfers, accounts, holds or
the log. (The sequencer's read of the queue once scanned every transfer on every group commit, so
the ledger slowed down as it grew.)"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from credits import ops, sequencer, verify
from credits.store import Ledger

HOT = {
    "sequencer: the queue": sequencer.QUEUED,
    "verify: the queue": verify.QUEUED,
    "a hold": ops.HOLD.replace(":id", "'x'"),
    "both accounts": ops.TWO_ACCOUNTS.replace(":debit", "'a'").replace(":credit", "'b'"),
    "an account": ops.ACCOUNT.replace(":name", "'a'"),
    "a transfer": ops.TRANSFERS + "WHERE t.transfer_id = 'x'",
    "stale holds": (
        "SELECT 1 FROM ledger_open_holds o JOIN ledger_accounts a ON a.id = o.account_id "
        "WHERE a.name = 'a' AND o.expires_us <= 5 LIMIT 1"
    ),
    "the log head": sequencer.HEAD,
    "a person's stale holds": ops.TRANSFERS
    + "JOIN ledger_open_holds o ON o.hold_pk = t.pk WHERE o.expires_us <= 5 "
    "AND o.account_id = 1 ORDER BY o.expires_us LIMIT 1000",
    "everyone's stale holds": ops.TRANSFERS
    + "JOIN ledger_open_holds o ON o.hold_pk = t.pk WHERE o.expires_us <= 5 "
    "ORDER BY o.expires_us LIMIT 1000",
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    """A ledger with transfers of every kind (no ANALYZE: the app never runs it)."""
    home: Path = tmp_path_factory.mktemp("plans")

    async def fill() -> None:
        book = Ledger(
            f"sqlite+aiosqlite:///{home / 'ledger.db'}", home, Ed25519PrivateKey.generate()
        )
        await book.start(background=False)
        for i in range(50):
            await book.grant(f"p{i}", 1000, f"welcome:p{i}", code="welcome")
            await book.reserve(f"p{i}", 10, f"turn:{i}", timeout_s=60)
            await book.settle(f"turn:{i}", 5)
        await book.close()

    import asyncio

    asyncio.run(fill())
    return sqlite3.connect(home / "ledger.db")


@pytest.mark.parametrize("name", sorted(HOT))
def test_no_hot_statement_scans_a_table(db: sqlite3.Connection, name: str) -> None:
    plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + HOT[name])]
    scans = [step for step in plan if step.startswith("SCAN") and "ledger_log_queue" not in step
             and not step.startswith("SCAN q")]  # fmt: skip
    assert not scans, f"{name}: {plan}"

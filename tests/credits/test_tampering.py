"""Someone with write access to the database edits history: `verify` notices and names the place.

The attacker first disables the append-only triggers (which on their own already refuse the edits).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from credits.store import Ledger
from credits.verify import verify


async def populate(ledger: Ledger) -> None:
    """Twelve log entries, checkpoints at 5 and 10 (the fixture checkpoints every 5)."""
    # Sequencing after each step (as SQLite does at every commit) puts the same checkpoints on
    # PostgreSQL, whose sequencer otherwise runs on its own a few times a second.
    await ledger.grant("ann", 50_000, "welcome:ann", code="welcome")
    await ledger.sequence()
    await ledger.grant("bob", 50_000, "welcome:bob", code="welcome")
    await ledger.sequence()
    for i in range(5):
        await ledger.reserve("ann", 2000, f"turn:t{i}", timeout_s=60, metadata={"model": "m"})
        await ledger.sequence()
        await ledger.settle(f"turn:t{i}", 500 + i)
        await ledger.sequence()
    report = await verify(ledger)
    assert report.ok and report.entries == 12 and report.checkpoints == 2, report.problems


def attack(ledger: Ledger, *statements: str) -> None:
    url = make_url(ledger.url)
    if ledger.sqlite:
        engine = create_engine(url.set(drivername="sqlite+pysqlite"))
        with engine.begin() as conn:
            for table in ("ledger_transfers", "ledger_log", "ledger_checkpoints"):
                for op in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{op}"))
            for s in statements:
                conn.execute(text(s))
        engine.dispose()
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("ledger_transfers", "ledger_log", "ledger_checkpoints"):
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for s in statements:
            conn.execute(s)


LAST_FOUR = "('turn:t3', 'turn:t3/post', 'turn:t4', 'turn:t4/post')"  # log entries 9-12
ATTACKS: dict[str, tuple[list[str], str]] = {
    "change an amount": (
        ["UPDATE ledger_transfers SET amount = 1 WHERE transfer_id = 'turn:t1/post'"],
        r"log entry 6 \(turn:t1/post\): the transfer does not match its log hash",
    ),
    "change an amount and its log hash": (  # the hash is recomputed in the test, see below
        ["UPDATE ledger_transfers SET amount = 1 WHERE transfer_id = 'turn:t1/post'"],
        r"checkpoint at size 10: the log's root differs from the signed one",
    ),
    "delete a transfer": (
        [
            "DELETE FROM ledger_log WHERE seq = 2",
            "DELETE FROM ledger_transfers WHERE transfer_id = 'welcome:bob'",
        ],
        r"log entry 2 is missing",
    ),
    "reorder two entries": (
        [
            "UPDATE ledger_log SET seq = 1000 WHERE seq = 3",
            "UPDATE ledger_log SET seq = 3 WHERE seq = 4",
            "UPDATE ledger_log SET seq = 4 WHERE seq = 1000",
        ],
        r"log entry 3 \(turn:t0/post\): the transfer does not match its log hash",
    ),
    "truncate the log": (
        [
            "DELETE FROM ledger_log WHERE seq > 8",
            f"DELETE FROM ledger_transfers WHERE transfer_id IN {LAST_FOUR}",
            "UPDATE ledger_log_head SET size = 8",
        ],
        r"checkpoint at size 10 covers more entries than the log has \(8\)",
    ),
    "edit a checkpoint": (
        ["UPDATE ledger_checkpoints SET size = 11 WHERE size = 10"],
        r"checkpoint at size 11: the signature does not verify",
    ),
    "drop the newest checkpoint and truncate": (
        [
            "DELETE FROM ledger_checkpoints WHERE size = 10",
            "DELETE FROM ledger_log WHERE seq > 8",
            f"DELETE FROM ledger_transfers WHERE transfer_id IN {LAST_FOUR}",
            "UPDATE ledger_log_head SET size = 8",
        ],
        r"checkpoint at size 10 \(in ledger-checkpoints.jsonl\) is missing from the database",
    ),
    "add credits to an account directly": (
        ["UPDATE ledger_accounts SET credits_posted = credits_posted + 99 WHERE name = 'user:bob'"],
        r"account user:bob: counters .* differ from the transfers'",
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_verify_names_the_tampered_place(ledger: Ledger, name: str) -> None:
    await populate(ledger)
    statements, expected = ATTACKS[name]
    if name == "change an amount and its log hash":
        statements = [*statements, await _recompute_leaf_sql(ledger, amount=1)]
    attack(ledger, *statements)
    report = await verify(ledger)
    assert not report.ok
    assert re.search(expected, report.problems[0]), report.problems


async def _entry_6(ledger: Ledger, amount: int | None = None, metadata: str | None = None) -> bytes:
    """Log entry 6 (`turn:t1/post`) as it is, or with another amount or metadata."""
    from credits.ledger import leaf_bytes

    t = await ledger.transfer("turn:t1/post")
    assert t is not None and t.seq == 6
    return leaf_bytes(
        6, t.transfer_id, t.kind.value, t.code, t.amount if amount is None else amount, t.debit,
        t.credit, t.hold, t.expires_us, t.ts_us, t.metadata if metadata is None else metadata,
    )  # fmt: skip


async def _recompute_leaf_sql(ledger: Ledger, **change: object) -> str:
    """The careful attacker: the altered entry gets the true hash of its new content."""
    from credits import log

    before = log.leaf_hash(await _entry_6(ledger))
    after = log.leaf_hash(await _entry_6(ledger, **change))  # type: ignore[arg-type]
    assert after != before, "the attack must really change the entry's hash"
    return f"UPDATE ledger_log SET leaf_hash = {_bytes(ledger, after)} WHERE seq = 6"


def _bytes(ledger: Ledger, value: bytes) -> str:
    return f"X'{value.hex()}'" if ledger.sqlite else f"'\\x{value.hex()}'::bytea"


async def test_the_append_only_triggers_refuse_edits(ledger: Ledger) -> None:
    await populate(ledger)
    url = make_url(ledger.url)
    run: Callable[[str], None]
    if ledger.sqlite:
        engine = create_engine(url.set(drivername="sqlite+pysqlite"))

        def run(sql: str) -> None:
            with engine.begin() as conn:
                conn.execute(text(sql))
    else:
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)

        def run(sql: str) -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql)

    for sql in (
        "UPDATE ledger_transfers SET amount = 1",
        "DELETE FROM ledger_transfers",
        "UPDATE ledger_log SET seq = seq + 100",
        "DELETE FROM ledger_checkpoints",
    ):
        with pytest.raises(Exception, match="append-only"):
            run(sql)
    assert (await verify(ledger)).ok

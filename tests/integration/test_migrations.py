"""The app's and the ledger's migrations share one database, each with its own version table."""

from __future__ import annotations

from sqlalchemy import inspect

from credits.store import MIGRATIONS as LEDGER_MIGRATIONS
from storage.engine import create_engine
from storage.migrate import upgrade_async
from storage.move import APP_TABLES, LEDGER_TABLES, PASSING


async def test_both_schemas_in_one_database_and_reruns_are_no_ops(database_url: str) -> None:
    for _ in range(2):
        await upgrade_async(database_url)
        await upgrade_async(database_url, LEDGER_MIGRATIONS, "ledger_alembic_version")
    engine = create_engine(database_url)
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    await engine.dispose()
    assert {
        "alembic_version",
        "ledger_alembic_version",
        "threads",
        "steps",
        "logins",
        "preferences",
        "identities",
    } <= tables
    assert {"ledger_accounts", "ledger_transfers", "ledger_log", "ledger_checkpoints"} <= tables


async def test_moving_to_postgres_takes_every_table(database_url: str) -> None:
    """`python -m storage move-to-postgres` copies the tables it names: every table the
    migrations make must be one of them, or its rows stay behind in SQLite without a word."""
    await upgrade_async(database_url)
    await upgrade_async(database_url, LEDGER_MIGRATIONS, "ledger_alembic_version")
    engine = create_engine(database_url)
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    await engine.dispose()
    versions = {"alembic_version", "ledger_alembic_version"}
    assert tables - versions == set(APP_TABLES) | set(LEDGER_TABLES) | set(PASSING)

"""The ledger's migrations are frozen DDL; `credits/schema.py` is the model a reader holds. They must
agree, on SQLite and PostgreSQL: a change to one without the other (or without a new revision)
fails here."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from credits import schema
from credits.migrate import sync_url
from credits.store import Ledger


async def test_the_migrated_ledger_matches_its_schema(ledger: Ledger) -> None:
    engine = create_engine(sync_url(ledger.url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": _ledger_tables}
            )
            differences = compare_metadata(context, schema.metadata)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert differences == []
    assert {t.name for t in schema.metadata.sorted_tables} <= tables


def _ledger_tables(name: str | None, kind: str, parent: dict[str, str | None]) -> bool:
    return kind != "table" or (
        (name or "").startswith("ledger_") and name != "ledger_alembic_version"
    )

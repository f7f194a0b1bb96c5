"""Bring the app's database schema up to date with Alembic (run on every start; a no-op when
current). The runner is the ledger's (credits/migrate.py), over the app's own migrations."""

from __future__ import annotations

from pathlib import Path

from credits import migrate

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def upgrade(url: str, location: Path = MIGRATIONS, version_table: str = "alembic_version") -> None:
    """Apply every migration in `location` not yet applied to the database at `url`."""
    migrate.upgrade(url, location, version_table)


async def upgrade_async(
    url: str, location: Path = MIGRATIONS, version_table: str = "alembic_version"
) -> None:
    await migrate.upgrade_async(url, location, version_table)

"""Bring the database schema up to date with Alembic (run on every start; a no-op when current)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from storage.engine import sync_url

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(
    url: str, location: Path = MIGRATIONS, version_table: str = "alembic_version"
) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("version_table", version_table)
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, location: Path = MIGRATIONS, version_table: str = "alembic_version") -> None:
    """Apply every migration in `location` not yet applied to the database at `url`."""
    command.upgrade(alembic_config(url, location, version_table), "head")


async def upgrade_async(
    url: str, location: Path = MIGRATIONS, version_table: str = "alembic_version"
) -> None:
    await asyncio.to_thread(upgrade, url, location, version_table)

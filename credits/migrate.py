"""Bring a database's schema up to date with Alembic: the ledger's own migrations here, and the
same runner for any other set (the app's, storage/migrate.py). Each set records its versions in its
own table, so the ledger can share a database with the app. A no-op when current.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import engine_from_config, pool
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "ledger_alembic_version"


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (Alembic runs synchronously)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    driver = {"sqlite": "pysqlite", "postgresql": "psycopg"}.get(backend)
    if driver is None:
        raise ValueError(f"Unsupported database backend {backend!r}: use SQLite or PostgreSQL.")
    return parsed.set(drivername=f"{backend}+{driver}").render_as_string(hide_password=False)


def alembic_config(
    url: str, location: Path = MIGRATIONS, version_table: str = VERSION_TABLE
) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("version_table", version_table)
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, location: Path = MIGRATIONS, version_table: str = VERSION_TABLE) -> None:
    """Apply every migration in `location` not yet applied to the database at `url`."""
    command.upgrade(alembic_config(url, location, version_table), "head")


async def upgrade_async(
    url: str, location: Path = MIGRATIONS, version_table: str = VERSION_TABLE
) -> None:
    await asyncio.to_thread(upgrade, url, location, version_table)


def run_environment() -> None:
    """What an Alembic `env.py` runs: synchronous migrations against the configured URL,
    recording versions in the table the config names."""
    config = context.config
    version_table = config.get_main_option("version_table") or "alembic_version"
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            literal_binds=True,
            version_table=version_table,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()

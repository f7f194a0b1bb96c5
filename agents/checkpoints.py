"""Where the graph's memory is checkpointed: a SQLite file beside the app database, or PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from sqlalchemy.engine import make_url


@asynccontextmanager
async def open_checkpointer(
    database_url: str, data_dir: Path
) -> AsyncIterator[BaseCheckpointSaver]:
    """A ready checkpointer for the configured database (tables created on first use)."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        async with AsyncPostgresSaver.from_conn_string(libpq) as postgres:
            await postgres.setup()
            yield postgres
        return
    conn = await aiosqlite.connect(data_dir / "checkpoints.db")
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver
    finally:
        await conn.close()

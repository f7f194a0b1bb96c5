"""Where the graph's memory is checkpointed: a SQLite file beside the app database, or PostgreSQL.

On PostgreSQL the saver draws connections from a small pool rather than sharing one: a turn
cancelled (Stop) between sending a query and reading its result leaves its connection mid-command,
and a shared connection then failed every later turn ("another command is already in progress").
The pool discards a connection returned in that state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

POOL_SIZE = 4  # the saver serialises its queries (one lock); a few spares replace discarded ones


@asynccontextmanager
async def open_checkpointer(
    database_url: str, data_dir: Path
) -> AsyncIterator[BaseCheckpointSaver]:
    """A ready checkpointer for the configured database (tables created on first use)."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
        # As the saver's own from_conn_string connects, but pooled.
        settings = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
        async with AsyncConnectionPool(
            libpq, min_size=1, max_size=POOL_SIZE, kwargs=settings, open=False
        ) as pool:
            postgres = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
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

"""Moving a SQLite install to PostgreSQL: everything people have, nothing left behind.

What moves, from the SQLite files in the data directory into the PostgreSQL database:
- the ledger (`ledger.db`): accounts, every transfer with its id and row key, the Merkle log,
  the signed checkpoints, open holds, the ledger's id. The tree and its root are the same, so
  `verify` passes against the same pinned key, and the checkpoint file stays valid;
- logins and each person's model choice, and Chainlit's chat history (`app.db`): users, threads,
  steps, elements, feedback;
- the model's memory of each thread (`checkpoints.db`, LangGraph's checkpoints and writes).

It refuses a target where anyone has signed in, any transfer exists or any memory is kept: it
moves into a new database, not into another install. (What a start on PostgreSQL creates by
itself, the schema, the system accounts and the first administrator's login, is replaced.) The
SQLite files are left as they were, a backup; `moved-to-postgres.json` beside them records the
move, so the app does not warn about them any more.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from sqlalchemy import Boolean, MetaData, create_engine, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.engine import Connection, Engine, make_url

from credits.migrate import sync_url
from storage.migrate import upgrade

MARKER = "moved-to-postgres.json"
APP_TABLES = (
    "users", "threads", "steps", "elements", "feedbacks", "logins", "preferences", "identities",
    "account_standing", "invitations", "orders", "payment_events", "wallets", "crypto_quotes",
    "crypto_payments", "chain_cursors", "images", "work_quotes", "image_choices",
    "task_runs",
)  # fmt: skip
# What lives minutes and is not moved: sign-ins and wallet bindings under way start again.
PASSING = ("sign_in_flows", "wallet_nonces")
LEDGER_TABLES = (
    "ledger_meta", "ledger_accounts", "ledger_transfers", "ledger_log", "ledger_checkpoints",
    "ledger_open_holds", "ledger_log_queue", "ledger_log_head",
)  # fmt: skip
SERIALS = (("ledger_accounts", "id"), ("ledger_transfers", "pk"))


class MoveRefused(Exception):
    """The move cannot be made as asked (a target in use, nothing to move); nothing was changed."""


@dataclass
class Moved:
    """How many rows of each table, and model-memory checkpoints, moved."""

    rows: dict[str, int] = field(default_factory=dict)
    memories: int = 0

    def summary(self) -> str:
        tables = ", ".join(f"{n} {t}" for t, n in self.rows.items() if n)
        return f"moved: {tables}; {self.memories} model-memory checkpoints"


def sqlite_files(data_dir: Path) -> dict[str, Path]:
    """The install's SQLite files that exist."""
    names = {"app": "app.db", "ledger": "ledger.db", "memory": "checkpoints.db"}
    return {k: data_dir / n for k, n in names.items() if (data_dir / n).exists()}


def left_behind(data_dir: Path) -> str | None:
    """What a start on PostgreSQL should warn about: SQLite data in the data directory that was
    never moved (None when there is none, or it was moved)."""
    files = sqlite_files(data_dir)
    if not files or (data_dir / MARKER).exists():
        return None
    people = _count(files.get("app"), "users")
    transfers = _count(files.get("ledger"), "ledger_transfers")
    if not people and not transfers:
        return None
    return (
        f"{data_dir} holds a SQLite install ({people} people, {transfers} ledger transfers) "
        "that is not in this PostgreSQL database: balances, logins and chats stay behind, and "
        "everyone who signs in here gets a new welcome bonus. Stop the app and run "
        "`python -m storage move-to-postgres` into a new, empty database."
    )


def _count(path: Path | None, table: str) -> int:
    if path is None:
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    except sqlite3.Error:
        return 0


async def move(data_dir: Path, app_url: str, ledger_url: str) -> Moved:
    """Move the SQLite install in `data_dir` to the PostgreSQL databases at `app_url` (chat
    history, logins, model memory) and `ledger_url` (the ledger; often the same database)."""
    from credits.store import MIGRATIONS as LEDGER_MIGRATIONS

    files = sqlite_files(data_dir)
    if "ledger" not in files and "app" not in files:
        raise MoveRefused(f"There is no SQLite install in {data_dir} (no app.db or ledger.db).")
    for url in {app_url, ledger_url}:
        if make_url(url).get_backend_name() != "postgresql":
            raise MoveRefused(f"The target must be PostgreSQL, not {make_url(url).drivername}.")
    upgrade(app_url)
    upgrade(ledger_url, LEDGER_MIGRATIONS, "ledger_alembic_version")
    async with AsyncPostgresSaver.from_conn_string(_libpq(app_url)) as memory:
        await memory.setup()
        moved = Moved()
        app, ledger = _sync(app_url), _sync(ledger_url)
        try:
            _refuse_unless_new(app, ledger)
            if "ledger" in files:
                moved.rows |= _move_ledger(_sqlite(files["ledger"]), ledger)
            if "app" in files:
                moved.rows |= _copy(_sqlite(files["app"]), app, APP_TABLES, clear=("logins",))
            if "memory" in files:
                moved.memories = await _move_memory(files["memory"], memory)
        finally:
            app.dispose()
            ledger.dispose()
    (data_dir / MARKER).write_text(
        json.dumps(
            {
                "to": make_url(app_url).render_as_string(hide_password=True),
                "ledger": make_url(ledger_url).render_as_string(hide_password=True),
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "rows": moved.rows,
                "memories": moved.memories,
            },
            indent=2,
        )
        + "\n"
    )
    return moved


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sync(url: str) -> Engine:
    return create_engine(sync_url(url))


def _sqlite(path: Path) -> Engine:
    return create_engine(f"sqlite+pysqlite:///{path}")


def _refuse_unless_new(app: Engine, ledger: Engine) -> None:
    """A target someone has used is refused; what a first start creates by itself is not use."""
    checks = (
        (ledger, "ledger_transfers", "ledger transfers"),
        (app, "users", "people who signed in"),
        (app, "threads", "chat threads"),
        (app, "checkpoints", "model-memory checkpoints"),
    )
    for engine, table, what in checks:
        with engine.connect() as conn:
            found = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        if found:
            raise MoveRefused(
                f"The target database already has {found} {what}: move into a new, empty "
                "database (create one, set DATABASE_URL to it, run this again). Nothing was changed."
            )


def _move_ledger(source: Engine, target: Engine) -> dict[str, int]:
    """The ledger, row for row and key for key, in one transaction; then the serial counters."""
    try:
        with target.begin() as conn:
            # A start on PostgreSQL made its own id, head and system accounts: this ledger's
            # replace them (the id row is append-only; the move is the one writer allowed to).
            conn.execute(text("ALTER TABLE ledger_meta DISABLE TRIGGER USER"))
            for table in ("ledger_meta", "ledger_log_head", "ledger_accounts"):
                conn.execute(text(f"DELETE FROM {table}"))
            counts = _copy_rows(source, conn, LEDGER_TABLES)
            conn.execute(text("ALTER TABLE ledger_meta ENABLE TRIGGER USER"))
            for table, column in SERIALS:
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                        f"coalesce(max({column}), 1), max({column}) IS NOT NULL) FROM {table}"
                    )
                )
    finally:
        source.dispose()
    return counts


def _copy(
    source: Engine, target: Engine, tables: tuple[str, ...], clear: tuple[str, ...] = ()
) -> dict[str, int]:
    """Copy `tables` in one transaction, emptying `clear` first (logins a first start made)."""
    try:
        with target.begin() as conn:
            for table in clear:
                conn.execute(text(f"DELETE FROM {table}"))
            return _copy_rows(source, conn, tables)
    finally:
        source.dispose()


def _copy_rows(source: Engine, target: Connection, tables: tuple[str, ...]) -> dict[str, int]:
    """Each table's rows in primary-key order (a row may name an earlier one of its table),
    each value as the PostgreSQL column takes it (SQLite keeps JSON, arrays and booleans as text
    or numbers)."""
    have = MetaData()
    have.reflect(source, only=lambda name, _: name in tables)
    want = MetaData()
    want.reflect(target, only=tables)
    counts: dict[str, int] = {}
    with source.connect() as src:
        for name in tables:
            if name not in have.tables:
                counts[name] = 0
                continue
            table, into = have.tables[name], want.tables[name]
            order = list(table.primary_key.columns) or list(table.columns)
            rows = [dict(r._mapping) for r in src.execute(select(table).order_by(*order))]
            shaped = [{c: _shape(into.c[c].type, v) for c, v in row.items()} for row in rows]
            for start in range(0, len(shaped), 1000):
                target.execute(into.insert(), shaped[start : start + 1000])
            counts[name] = len(rows)
            total = target.execute(select(func.count()).select_from(into)).scalar_one()
            assert total == len(rows), f"{name}: {total} rows in the target, {len(rows)} moved"
    return counts


def _shape(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(kind, JSONB | ARRAY) and isinstance(value, str):
        return json.loads(value)
    if isinstance(kind, Boolean):
        return bool(value)
    if isinstance(kind, UUID):
        return str(value)
    return value


async def _move_memory(path: Path, target: AsyncPostgresSaver) -> int:
    """Every checkpoint of every thread, oldest first, with its pending writes."""
    import aiosqlite

    async with aiosqlite.connect(path) as conn:
        source = AsyncSqliteSaver(conn)
        found = [t async for t in source.alist(None)]
        for saved in reversed(found):  # alist gives the newest first
            configurable = dict(saved.config["configurable"])
            parent = (saved.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            config: Any = {
                "configurable": {
                    "thread_id": configurable["thread_id"],
                    "checkpoint_ns": configurable.get("checkpoint_ns", ""),
                    **({"checkpoint_id": parent} if parent else {}),
                }
            }
            stored = await target.aput(
                config, saved.checkpoint, saved.metadata, saved.checkpoint["channel_versions"]
            )
            by_task: dict[str, list[tuple[str, Any]]] = {}
            for task_id, channel, value in saved.pending_writes or []:
                by_task.setdefault(task_id, []).append((channel, value))
            for task_id, writes in by_task.items():
                await target.aput_writes(stored, writes, task_id)
    return len(found)

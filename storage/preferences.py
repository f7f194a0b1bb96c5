"""What each person chose and expects to find again in every chat: for now, their model."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, Table, Text, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

metadata = MetaData()
preferences = Table(
    "preferences",
    metadata,
    Column("identifier", Text, primary_key=True),
    Column("model", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


async def chosen_model(engine: AsyncEngine, identifier: str) -> str | None:
    """The model id `identifier` last chose, or None if they never chose one."""
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(preferences.c.model).where(preferences.c.identifier == identifier)
            )
        ).scalar_one_or_none()


async def choose_model(engine: AsyncEngine, identifier: str, model_id: str) -> None:
    """Remember `model_id` as the choice of `identifier` (the last choice wins)."""
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    values = {"identifier": identifier, "model": model_id, "updated_at": datetime.now(UTC)}
    statement = insert(preferences).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[preferences.c.identifier],
        set_={"model": statement.excluded.model, "updated_at": statement.excluded.updated_at},
    )
    async with engine.begin() as conn:
        await conn.execute(statement)

"""What each person chose and expects to find again in every chat: their model, and how their
images are made (and above what price they are asked first)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text, select
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


image_choices = Table(
    "image_choices",
    metadata,
    Column("identifier", Text, primary_key=True),
    Column("model", Text),
    Column("size", Text),
    Column("steps", Integer),
    Column("count", Integer),
    Column("seed", BigInteger),
    Column("ask_above", Integer),  # credits: work quoted above this asks before it runs
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
IMAGE_CHOICES = ("model", "size", "steps", "count", "seed", "ask_above")


async def image_choices_of(engine: AsyncEngine, identifier: str) -> dict[str, object]:
    """What `identifier` chose for images (and when to be asked first); absent: never chosen."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(image_choices).where(image_choices.c.identifier == identifier)
            )
        ).first()
    if row is None:
        return {}
    return {name: getattr(row, name) for name in IMAGE_CHOICES if getattr(row, name) is not None}


async def choose_images(engine: AsyncEngine, identifier: str, chosen: dict[str, object]) -> None:
    """Remember `chosen` (some of IMAGE_CHOICES; None forgets one) for `identifier`."""
    values = {name: chosen[name] for name in IMAGE_CHOICES if name in chosen}
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(image_choices).values(
        identifier=identifier, updated_at=datetime.now(UTC), **values
    )
    statement = statement.on_conflict_do_update(
        index_elements=[image_choices.c.identifier],
        set_={name: statement.excluded[name] for name in [*values, "updated_at"]},
    )
    async with engine.begin() as conn:
        await conn.execute(statement)

"""What each person chose and expects to find again in every chat: their model, and how their
images are made (and above what price they are asked first)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
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


@dataclass(frozen=True)
class ImageChoices:
    """How a person wants their images (None: the model's default, or the deployment's)."""

    model: str | None = None
    size: str | None = None  # "WIDTHxHEIGHT"
    steps: int | None = None
    count: int | None = None
    seed: int | None = None
    ask_above: int | None = None  # credits: work quoted at this or more waits for a Confirm


IMAGE_CHOICES = tuple(f.name for f in fields(ImageChoices))
Choice = str | int | None


async def image_choices_of(engine: AsyncEngine, identifier: str) -> ImageChoices:
    """What `identifier` chose for images (and when to be asked first)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(image_choices).where(image_choices.c.identifier == identifier)
            )
        ).first()
    if row is None:
        return ImageChoices()
    return ImageChoices(**{name: getattr(row, name) for name in IMAGE_CHOICES})


async def choose_images(engine: AsyncEngine, identifier: str, chosen: Mapping[str, Choice]) -> None:
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

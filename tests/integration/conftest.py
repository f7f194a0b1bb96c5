"""Fixtures of the integration tests, each run on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import create_engine
from storage.migrate import upgrade_async


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The app's database, migrated to the latest schema."""
    await upgrade_async(database_url)
    made = create_engine(database_url)
    yield made
    await made.dispose()

"""Fixtures of the integration tests, each run on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.store import Ledger
from credits.verify import verify
from storage.engine import create_engine
from storage.migrate import upgrade_async
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    """The loopback OpenAI-compatible server, one per test module."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The app's database, migrated to the latest schema."""
    await upgrade_async(database_url)
    made = create_engine(database_url)
    yield made
    await made.dispose()


@pytest.fixture
async def ledger(database_url: str, tmp_path: Path) -> AsyncIterator[Ledger]:
    """A ledger beside the app's database (its own SQLite file, or the same PostgreSQL
    database), which must verify after the test."""
    url = database_url
    if url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    book = Ledger(url, tmp_path, Ed25519PrivateKey.generate())
    await book.start(background=False)
    yield book
    report = await verify(book)
    await book.close()
    assert report.ok, report.problems

"""A fresh ledger on SQLite and on PostgreSQL, with a clock the test controls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from credits.store import Ledger

START_US = 1_800_000_000_000_000  # 2027-01-15


@dataclass
class Clock:
    now: int = START_US

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ledger(database_url: str, tmp_path: Path, clock: Clock) -> AsyncIterator[Ledger]:
    url = database_url
    if url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    book = Ledger(url, tmp_path, Ed25519PrivateKey.generate(), checkpoint_every=5, clock=clock)
    await book.start(background=False)
    yield book
    await book.close()

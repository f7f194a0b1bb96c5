"""SQLite's WAL stays bounded under steady load (it would otherwise never start over)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from credits.sqlite import Writer
from credits.store import Ledger
from credits.verify import verify


def wal_size(path: Path) -> int:
    return os.stat(f"{path}-wal").st_size


async def test_the_wal_starts_over_once_past_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 256 * 1024
    monkeypatch.setattr(Writer, "WAL_LIMIT_BYTES", limit)
    path = tmp_path / "ledger.db"
    book = Ledger(f"sqlite+aiosqlite:///{path}", tmp_path, Ed25519PrivateKey.generate())
    await book.start()  # with the background WAL copy, as the app runs it
    try:
        await book.grant("steady", 10**9, "welcome:steady", code="welcome")
        largest = 0

        async def turns(client: int) -> None:
            nonlocal largest
            for i in range(150):
                hold = f"turn:{client}-{i}"
                await book.reserve("steady", 1000, hold, timeout_s=600)
                await book.settle(hold, 500)
                largest = max(largest, wal_size(path))

        await asyncio.gather(*(turns(c) for c in range(8)))
        # One batch may land past the limit before the writer starts the WAL over.
        assert 0 < largest < 4 * limit
        assert (await verify(book)).ok
    finally:
        await book.close()

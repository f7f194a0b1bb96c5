"""Password logins on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from auth import passwords


async def test_right_password_logs_in_and_wrong_ones_do_not(engine: AsyncEngine) -> None:
    assert await passwords.create(engine, "Ann@Example.com", "correct horse")
    login = await passwords.check(engine, "ann@example.com ", "correct horse")
    assert login == passwords.Login(identifier="ann@example.com", role="user")
    assert await passwords.check(engine, "ann@example.com", "wrong") is None
    assert await passwords.check(engine, "nobody@example.com", "correct horse") is None
    assert await passwords.check(engine, "ann@example.com", "") is None


async def test_passwords_are_stored_as_argon2_hashes(engine: AsyncEngine) -> None:
    await passwords.create(engine, "ann@example.com", "correct horse")
    async with engine.connect() as conn:
        stored = (await conn.execute(select(passwords.logins.c.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored


async def test_first_admin_is_created_once_even_by_concurrent_starts(engine: AsyncEngine) -> None:
    results = await asyncio.gather(
        *(passwords.ensure_admin(engine, "admin@localhost", None) for _ in range(5))
    )
    generated = [r for r in results if r]
    assert len(generated) == 1
    login = await passwords.check(engine, "admin@localhost", generated[0])
    assert login is not None and login.role == "admin"
    assert await passwords.ensure_admin(engine, "admin@localhost", "other") is None
    assert await passwords.check(engine, "admin@localhost", "other") is None


async def test_configured_admin_password_is_used(engine: AsyncEngine) -> None:
    assert await passwords.ensure_admin(engine, "root@example.com", "s3cret-pass") is None
    assert await passwords.check(engine, "root@example.com", "s3cret-pass") is not None


async def test_duplicate_and_empty_logins_are_refused(engine: AsyncEngine) -> None:
    assert await passwords.create(engine, "ann@example.com", "pw")
    assert not await passwords.create(engine, "ANN@example.com", "other")
    with pytest.raises(ValueError):
        await passwords.create(engine, "  ", "pw")


async def test_hashing_runs_off_the_event_loop(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Argon2 takes tens of milliseconds: on the event loop it would stall every chat."""
    hasher = passwords._hasher
    threads: list[str] = []

    class Noting:
        def hash(self, password: str) -> str:
            threads.append(threading.current_thread().name)
            return hasher.hash(password)

        def verify(self, stored: str, password: str) -> bool:
            threads.append(threading.current_thread().name)
            return hasher.verify(stored, password)

        def check_needs_rehash(self, stored: str) -> bool:
            return hasher.check_needs_rehash(stored)

    monkeypatch.setattr(passwords, "_hasher", Noting())
    assert await passwords.create(engine, "ann@example.com", "correct horse")
    assert await passwords.check(engine, "ann@example.com", "correct horse") is not None
    assert await passwords.set_password(engine, "ann@example.com", "battery staple")
    assert await passwords.check(engine, "ann@example.com", "correct horse") is None
    assert len(threads) == 4
    assert threading.main_thread().name not in threads

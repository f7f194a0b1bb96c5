"""Password logins, hashed with Argon2id, and the first administrator."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Column, DateTime, MetaData, Table, Text, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from settings import write_private

Role = Literal["admin", "user"]

# Argon2id at the library's time and memory cost (3 passes, 64 MiB) on one lane: the default four
# lanes spread each hash over both cores of a small server, so two sign-ins at once stalled every
# chat. On one lane a hash costs the same CPU (~190 ms measured here) on one core; hashes made with
# four lanes still verify, and are rehashed at their next sign-in.
_hasher = PasswordHasher(parallelism=1)
# Argon2 runs in this one thread, never in the default pool that ledger reads and history writes
# share, nor two at once: sign-ins queue here (about five a second), and chats keep a core
# whatever arrives (bench/login_flood.py).
_argon2 = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argon2")
# Verified against when the login does not exist, so both failures take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

metadata = MetaData()
logins = Table(
    "logins",
    metadata,
    Column("identifier", Text, primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Login:
    identifier: str
    role: Role


def normalise(identifier: str) -> str:
    return identifier.strip().lower()


async def hash_password(password: str) -> str:
    """Argon2id hashing (~190 ms of CPU here, and 64 MiB) runs in a thread of its own, never on
    the event loop, where each sign-in would stall every chat for its length, nor in the default
    pool. One at a time: it bounds their memory, and leaves the other core to the chats."""
    return await asyncio.get_running_loop().run_in_executor(_argon2, _hasher.hash, password)


async def check(engine: AsyncEngine, identifier: str, password: str) -> Login | None:
    """The login if `password` is right for `identifier`, else None (never says which was wrong).
    The hash is checked in a worker thread, as `hash_password` hashes."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(logins.c.password_hash, logins.c.role).where(
                    logins.c.identifier == normalise(identifier)
                )
            )
        ).first()
    stored = row.password_hash if row else _DUMMY_HASH
    try:
        await asyncio.get_running_loop().run_in_executor(_argon2, _hasher.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(stored):
        await set_password(engine, identifier, password)
    return Login(identifier=normalise(identifier), role=row.role)


async def create(engine: AsyncEngine, identifier: str, password: str, role: Role = "user") -> bool:
    """Add a login; False if one with this identifier already exists."""
    if not identifier.strip() or not password:
        raise ValueError("A login needs an identifier and a password.")
    if ":" in identifier:  # `<provider>:<subject>` names people signed in through a provider
        raise ValueError("A login's identifier may not contain ':'.")
    hashed = await hash_password(password)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(logins).values(
                    identifier=normalise(identifier),
                    password_hash=hashed,
                    role=role,
                    created_at=datetime.now(UTC),
                )
            )
    except IntegrityError:
        return False
    return True


async def set_password(engine: AsyncEngine, identifier: str, password: str) -> bool:
    hashed = await hash_password(password)
    async with engine.begin() as conn:
        result = await conn.execute(
            update(logins)
            .where(logins.c.identifier == normalise(identifier))
            .values(password_hash=hashed)
        )
    return result.rowcount == 1


async def ensure_admin(engine: AsyncEngine, email: str, password: str | None) -> str | None:
    """Create the first administrator if missing. Returns the password when it was generated."""
    generated = None if password else secrets.token_urlsafe(12)
    created = await create(engine, email, password or generated or "", role="admin")
    return generated if created else None


async def ensure_first_admin(
    engine: AsyncEngine, email: str, password: str | None, data_dir: Path
) -> None:
    """At first start, the administrator `email`. With no configured password one is generated,
    shown first (so that it is seen whatever happens next) and kept in the data directory, over a
    file left by an earlier database (its administrator is not in this one)."""
    generated = await ensure_admin(engine, email, password)
    if generated is None:
        return
    path = data_dir / "initial-admin-password"
    print(
        f"\n{'=' * 64}\n  First run: created administrator {email}\n  Password: {generated}\n"
        f"  (also saved to {path}; change it after logging in)\n{'=' * 64}\n",
        flush=True,
    )
    write_private(path, generated, replace=True)


async def role_of(engine: AsyncEngine, identifier: str) -> Role | None:
    """The role of the password login `identifier` as stored now, or None if there is none."""
    async with engine.connect() as conn:
        role = (
            await conn.execute(
                select(logins.c.role).where(logins.c.identifier == normalise(identifier))
            )
        ).scalar_one_or_none()
    return role if role in ("admin", "user") else None

"""Who signs in through a provider: an identity keyed by the provider and the provider's stable
subject, never by a display name or an unverified email.

A GitHub login `bob` used to become the password user `bob`, with their threads, credits and role.
Now an identity's account is `<provider>:<subject>` (`github:4242`, `google:1070...`), a name no
password login can take (they may not contain ':'), and an email counts only when the provider
says it is verified. Roles come from our records alone: a password login's role, or a verified email
listed in ADMIN_EMAILS, looked up again whenever an admin action is taken.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, MetaData, Table, Text, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.errors import IdentityRefused
from auth.passwords import normalise

metadata = MetaData()
identities = Table(
    "identities",
    metadata,
    Column("provider", Text, primary_key=True),
    Column("subject", Text, primary_key=True),
    Column("account", Text, nullable=False),
    Column("email", Text),
    Column("email_verified", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Identity:
    provider: str  # the key its subject is unique within: `github`, or an OIDC issuer's URL
    subject: str
    email: str | None  # verified by the provider, or None
    name: str
    prefix: str = ""  # its account's name starts with this (the provider's configured name)

    @property
    def account(self) -> str:
        """Who this identity is here, when it is not linked to an existing account."""
        return f"{self.prefix or self.provider}:{self.subject}"


def identity_of(provider: str, raw: dict[str, Any], prefix: str = "") -> Identity:
    """The identity in a provider's user data (GitHub's user API with its emails; an OpenID
    Connect provider's verified id_token claims)."""
    if provider == "github":
        subject = raw.get("id")
        verified = [
            e for e in raw.get("emails") or [] if isinstance(e, dict) and e.get("verified") is True
        ]
        primary = [e for e in verified if e.get("primary")] or verified
        email = str(primary[0]["email"]) if primary else None
        name = str(raw.get("login") or raw.get("name") or "")
    else:
        subject = raw.get("sub") or (raw.get("id") if provider == "google" else None)
        ok = raw.get("email_verified") is True or raw.get("verified_email") is True
        email = str(raw["email"]) if ok and raw.get("email") else None
        name = str(raw.get("name") or raw.get("preferred_username") or "")
    if subject is None or str(subject).strip() == "" or len(str(subject)) > 255:
        raise IdentityRefused(f"The {prefix or provider} sign-in named no stable subject: refused.")
    return Identity(
        provider, str(subject), normalise(email) if email else None, name or str(subject), prefix
    )


def _key(provider: str, subject: str) -> Any:
    return (identities.c.provider == provider) & (identities.c.subject == subject)


async def known(engine: AsyncEngine, identity: Identity) -> str | None:
    """The account this identity signs in to, if it has one (its verified email is recorded as
    the provider says it now)."""
    key = _key(identity.provider, identity.subject)
    async with engine.begin() as conn:
        found = (await conn.execute(select(identities.c.account).where(key))).scalar_one_or_none()
        if found is not None:
            await conn.execute(
                update(identities)
                .where(key)
                .values(
                    email=identity.email, email_verified=identity.email is not None,
                    last_seen_at=datetime.now(UTC),
                )
            )  # fmt: skip
    return None if found is None else str(found)


async def attach(engine: AsyncEngine, identity: Identity, account: str | None = None) -> str:
    """Record the identity as signing in to `account` (default: an account of its own); the
    account it signs in to. If it was recorded meanwhile (the same person signing in twice at
    once), the first record stands and its account is the answer."""
    now = datetime.now(UTC)
    with contextlib.suppress(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                identities.insert().values(
                    provider=identity.provider, subject=identity.subject,
                    account=account or identity.account, email=identity.email,
                    email_verified=identity.email is not None, created_at=now, last_seen_at=now,
                )
            )  # fmt: skip
            return account or identity.account
    found = await known(engine, identity)
    assert found is not None, "an insert refused for its key means the key is there"
    return found


async def sign_in(engine: AsyncEngine, identity: Identity) -> str:
    """The identity's account, made for it at its first sign-in."""
    return await known(engine, identity) or await attach(engine, identity)


@dataclass(frozen=True)
class Link:
    provider: str
    subject: str
    email: str | None
    created_at: datetime


async def links(engine: AsyncEngine, account: str) -> list[Link]:
    """The provider identities that sign in to `account`, oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                identities.c.provider, identities.c.subject, identities.c.email,
                identities.c.created_at,
            )
            .where(identities.c.account == account)
            .order_by(identities.c.created_at)
        )  # fmt: skip
        return [Link(r[0], r[1], r[2], r[3]) for r in rows]


async def unlink(engine: AsyncEngine, account: str, provider: str, subject: str) -> bool:
    """Remove one of `account`'s identities (never another account's); whether it was there."""
    async with engine.begin() as conn:
        done = await conn.execute(
            identities.delete().where(_key(provider, subject) & (identities.c.account == account))
        )
        return bool(done.rowcount)


async def verified_emails(engine: AsyncEngine, account: str) -> set[str]:
    """The emails the providers of `account`'s identities last said were verified."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(identities.c.email).where(
                (identities.c.account == account) & identities.c.email_verified
            )
        )
        return {str(r[0]) for r in rows if r[0]}


def admin_by_email(emails: set[str], admin_emails: Iterable[str]) -> bool:
    return bool(emails & {normalise(e) for e in admin_emails if e.strip()})

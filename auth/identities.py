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


class IdentityRefused(Exception):
    """The provider's answer names no stable subject: nobody can be signed in from it."""


@dataclass(frozen=True)
class Identity:
    provider: str
    subject: str
    email: str | None  # verified by the provider, or None
    name: str

    @property
    def account(self) -> str:
        """Who this identity is here, when it is not linked to an existing account."""
        return f"{self.provider}:{self.subject}"


def identity_of(provider: str, raw: dict[str, Any]) -> Identity:
    """The identity in a provider's user data (GitHub's user API with its emails; Google's and any
    OpenID Connect provider's claims)."""
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
        raise IdentityRefused(f"The {provider} sign-in named no stable subject: refused.")
    return Identity(
        provider, str(subject), normalise(email) if email else None, name or str(subject)
    )


async def sign_in(engine: AsyncEngine, identity: Identity) -> str:
    """Record the identity (its verified email as the provider says now); its account."""
    now = datetime.now(UTC)
    key = (identities.c.provider == identity.provider) & (identities.c.subject == identity.subject)
    async with engine.begin() as conn:
        found = (await conn.execute(select(identities.c.account).where(key))).scalar_one_or_none()
        if found is not None:
            await conn.execute(
                update(identities)
                .where(key)
                .values(
                    email=identity.email, email_verified=identity.email is not None,
                    last_seen_at=now,
                )
            )  # fmt: skip
            return str(found)
    # The same identity signing in twice at once: the first insert stands, the account is the same.
    with contextlib.suppress(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(
                identities.insert().values(
                    provider=identity.provider, subject=identity.subject,
                    account=identity.account, email=identity.email,
                    email_verified=identity.email is not None, created_at=now, last_seen_at=now,
                )
            )  # fmt: skip
    return identity.account


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

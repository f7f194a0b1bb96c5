"""Who may make an account by signing in through a provider: the operator's sign-up policy.

- `open`: anyone the provider vouches for.
- `allowlist`: a verified email listed in SIGNUP_EMAILS or at a domain in SIGNUP_EMAIL_DOMAINS, or a
  member of the GitHub organisation SIGNUP_GITHUB_ORG (signing in with GitHub); or an invitation.
- `invite`: an invitation only (`python -m auth invite EMAIL`): one account for the person whose
  provider verifies that email, used up when they sign up.

Only new accounts are judged: a person who has one signs in whatever the policy says now (the
operator disables accounts for that). Password logins are made by the operator alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, Table, Text, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.identities import Identity
from auth.passwords import normalise

MODES = ("open", "allowlist", "invite")

metadata = MetaData()
invitations = Table(
    "invitations",
    metadata,
    Column("email", Text, primary_key=True),
    Column("invited_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("used_by", Text),
    Column("used_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Policy:
    mode: str = "open"
    emails: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    github_org: str | None = None

    @classmethod
    def of(cls, mode: str, emails: str, domains: str, github_org: str | None) -> Policy:
        if mode not in MODES:
            raise ValueError(f"SIGNUP is one of {', '.join(MODES)}, not {mode!r}")
        return cls(
            mode,
            frozenset(normalise(e) for e in emails.split(",") if e.strip()),
            frozenset(d.strip().lower().lstrip("@") for d in domains.split(",") if d.strip()),
            github_org.strip() if github_org and github_org.strip() else None,
        )

    def listed(self, email: str | None) -> bool:
        return email is not None and (
            email in self.emails or email.rpartition("@")[2] in self.domains
        )

    @property
    def asks_github_org(self) -> bool:
        return self.mode == "allowlist" and self.github_org is not None


async def refusal(
    engine: AsyncEngine, policy: Policy, identity: Identity, github_member: bool = False
) -> str | None:
    """None when `identity` may make an account now (an invitation it relies on is used up);
    otherwise why not, in words for the person."""
    if policy.mode == "open":
        return None
    if policy.mode == "allowlist" and (policy.listed(identity.email) or github_member):
        return None
    if identity.email is not None and await _use_invitation(engine, identity):
        return None
    if identity.email is None:
        return (
            "Signing up here needs an email address your provider has verified, and it did not "
            "give one. Ask the administrator for access."
        )
    if policy.mode == "allowlist":
        return f"{identity.email} is not on this site's list of people who may sign up."
    return f"Signing up here is by invitation, and {identity.email} has none."


async def _use_invitation(engine: AsyncEngine, identity: Identity) -> bool:
    async with engine.begin() as conn:
        done = await conn.execute(
            update(invitations)
            .where((invitations.c.email == identity.email) & invitations.c.used_by.is_(None))
            .values(used_by=identity.account, used_at=datetime.now(UTC))
        )
        return bool(done.rowcount)


async def invite(engine: AsyncEngine, email: str, invited_by: str) -> bool:
    """Invite `email`; False if it was invited already."""
    try:
        async with engine.begin() as conn:
            await conn.execute(
                invitations.insert().values(
                    email=normalise(email), invited_by=invited_by, created_at=datetime.now(UTC)
                )
            )
    except IntegrityError:
        return False
    return True


async def pending(engine: AsyncEngine) -> list[tuple[str, str | None]]:
    """Every invitation: (email, the account that used it, or None)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(invitations.c.email, invitations.c.used_by).order_by(invitations.c.created_at)
        )
        return [(r[0], r[1]) for r in rows]

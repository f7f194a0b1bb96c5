"""People who sign in through a provider are known by the provider's stable subject: a look-alike
name never becomes someone else, an unverified email never counts, and an administrator by email is
one only while a provider says that email is verified. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from auth import identities, passwords
from auth.errors import IdentityRefused
from auth.identities import Identity, identity_of, sign_in
from auth.roles import is_admin

GITHUB_BOB = {
    "id": 4242,
    "login": "bob",
    "emails": [
        {"email": "bob@example.com", "verified": False, "primary": True},
        {"email": "Bob@Work.example", "verified": True, "primary": False},
    ],
}


def test_identities_come_from_stable_subjects_and_verified_emails() -> None:
    bob = identity_of("github", GITHUB_BOB)
    assert (bob.account, bob.email, bob.name) == ("github:4242", "bob@work.example", "bob")
    google = identity_of("google", {"sub": "1070", "email": "g@x.com", "email_verified": True})
    assert (google.account, google.email) == ("google:1070", "g@x.com")
    unverified = identity_of("generic", {"sub": "s-1", "email": "root@example.com"})
    assert unverified.email is None  # the provider did not say it is verified
    assert (
        identity_of("generic", {"sub": "s-2", "email_verified": "true", "email": "a@b"}).email
        is None
    )
    for raw in ({}, {"sub": ""}, {"sub": "x" * 300}, {"id": 5}):
        with pytest.raises(IdentityRefused):
            identity_of("generic", raw)


async def test_a_look_alike_stays_another_person(engine: AsyncEngine) -> None:
    """The password user `bob` is an admin; GitHub's `bob`, whatever its email, is someone else,
    and the admin's role never passes to it."""
    await passwords.create(engine, "bob", "a-long-enough-password", role="admin")
    account = await sign_in(engine, identity_of("github", GITHUB_BOB))
    assert account == "github:4242" != "bob"
    assert not await is_admin(engine, account, "admin", [])
    assert await is_admin(engine, "bob", "admin", [])
    with pytest.raises(ValueError, match="may not contain ':'"):
        await passwords.create(engine, "github:4242", "a-long-enough-password")


async def test_the_same_identity_is_the_same_account_even_signing_in_twice_at_once(
    engine: AsyncEngine,
) -> None:
    ann = Identity("google", "777", "ann@example.com", "Ann")
    accounts = await asyncio.gather(*(sign_in(engine, ann) for _ in range(5)))
    assert set(accounts) == {"google:777"}
    assert await identities.verified_emails(engine, "google:777") == {"ann@example.com"}


async def test_admin_emails_count_only_while_verified(engine: AsyncEngine) -> None:
    admins = ["Boss@Example.com"]
    verified = Identity("generic", "boss", "boss@example.com", "Boss")
    account = await sign_in(engine, verified)
    assert await is_admin(engine, account, "admin", admins)
    assert not await is_admin(engine, account, "admin", [])  # removed from ADMIN_EMAILS
    await sign_in(engine, Identity("generic", "boss", None, "Boss"))  # no longer verified
    assert not await is_admin(engine, account, "admin", admins)
    impostor = await sign_in(
        engine, identity_of("generic", {"sub": "x", "email": "boss@example.com"})
    )
    assert not await is_admin(engine, impostor, "admin", admins)

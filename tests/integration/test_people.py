"""What the app keeps about people, on SQLite and PostgreSQL: their model choice, who is an admin
right now, and whom an admin's /grant names."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.catalog import AUTO, load_catalog
from auth import passwords
from auth.roles import is_admin
from credits.store import Ledger
from settings import ROOT
from ui.admin import find_user
from ui.picker import preferred, remember

CATALOG = load_catalog(
    ROOT / "models.toml", {"VLLM_BASE_URL": "http://127.0.0.1:9/v1"}.get, "smollm2-135m"
)


async def test_a_model_choice_is_kept_per_person_and_the_last_one_wins(engine: AsyncEngine) -> None:
    assert await preferred(engine, CATALOG, "ann") == "smollm2-135m"  # none yet: the default
    assert await remember(engine, CATALOG, "ann", "vllm-llama-3.1-8b") == "vllm-llama-3.1-8b"
    assert await remember(engine, CATALOG, "ann", AUTO) == AUTO
    assert await remember(engine, CATALOG, "bo", "vllm-llama-3.1-8b") == "vllm-llama-3.1-8b"
    assert await preferred(engine, CATALOG, "ann") == AUTO
    assert await preferred(engine, CATALOG, "bo") == "vllm-llama-3.1-8b"


async def test_a_choice_not_offered_is_refused_and_a_vanished_one_falls_back(
    engine: AsyncEngine,
) -> None:
    for bad in ("llama-3.1-8b", "flux-schnell", "no-such-model", None, 42, {"x": 1}):
        assert await remember(engine, CATALOG, "cy", bad) is None  # hidden, not chat, unknown
    assert await preferred(engine, CATALOG, "cy") == "smollm2-135m"
    await remember(engine, CATALOG, "cy", "vllm-llama-3.1-8b")
    without_vllm = load_catalog(ROOT / "models.toml", lambda _: None, "smollm2-135m")
    assert await preferred(engine, without_vllm, "cy") == "smollm2-135m"  # its provider is gone


async def test_admin_means_signed_in_as_one_and_still_one(engine: AsyncEngine) -> None:
    await passwords.create(engine, "root@example.com", "pw-long-enough", role="admin")
    assert await is_admin(engine, "root@example.com", "admin", [])
    # An OAuth identity with the same name signs in with the role "user": not an admin.
    assert not await is_admin(engine, "root@example.com", "user", [])
    assert not await is_admin(engine, "stranger@example.com", "admin", [])
    async with engine.begin() as conn:  # demoted while signed in
        await conn.execute(
            update(passwords.logins)
            .where(passwords.logins.c.identifier == "root@example.com")
            .values(role="user")
        )
    assert not await is_admin(engine, "root@example.com", "admin", [])


async def test_a_grant_names_someone_who_signed_in_or_has_a_login(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    await ledger.open_account("OAuthPerson")  # OAuth identifiers keep their case
    await passwords.create(engine, "pat@example.com", "pw-long-enough")
    assert await find_user(ledger, engine, "OAuthPerson") == "OAuthPerson"
    assert await find_user(ledger, engine, "PAT@example.com") == "pat@example.com"
    assert await find_user(ledger, engine, "nobody") is None
    assert await find_user(ledger, engine, "x" * 400) is None

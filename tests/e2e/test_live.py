"""Updates to a person's open chats from outside them: an administrator's grant reaches the badge of
every chat the person has open, without a reload, on the same process and across replicas
(PostgreSQL LISTEN/NOTIFY, Redis pub/sub)."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from credits.ledger import UNITS_PER_CREDIT
from settings import ROOT
from tests.e2e.client import ChatSession, login
from tests.e2e.conftest import ADMIN, RunningApp, new_user, open_chat
from tests.e2e.process import app_environment, running_app

pytestmark = pytest.mark.e2e

WELCOME = 1000 * UNITS_PER_CREDIT
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def badge_shows(units: int) -> Callable[[list[tuple[str, Any]]], bool]:
    return lambda events: any(
        n == "element" and d.get("name") == "CreditBadge" and d["props"]["units"] == units
        for n, d in events
    )


async def test_an_admins_grant_reaches_the_persons_open_chats(app: RunningApp) -> None:
    """Two tabs open, nothing sent: the grant moves both badges, with a toast saying why."""
    user, password = await new_user(app)
    tabs = [await open_chat(app, user, password) for _ in range(2)]
    seen = [len(tab.events) for tab in tabs]
    admin = await open_chat(app, *ADMIN)
    await admin.send(f"/grant {user} 5 a gift")
    await admin.close()
    for tab, after in zip(tabs, seen, strict=True):
        await tab.wait_until(badge_shows(WELCOME + 5 * UNITS_PER_CREDIT), after, timeout=10)
        toast = await tab.wait_for("toast", after, timeout=10)
        assert toast["message"] == "An administrator granted you 5 credits."
        await tab.close()


@pytest.mark.parametrize("channel", ["postgres", "redis"])
async def test_a_grant_on_one_replica_reaches_a_chat_on_another(
    fresh_postgres_url: str, tmp_path: Path, channel: str
) -> None:
    """Two replicas on one PostgreSQL database (sharing the signing key and the session secret,
    as replicas must): a person's chat is open on the first, the administrator grants on the
    second, and the badge on the first moves."""
    common = dict(
        DATABASE_URL=fresh_postgres_url,
        LEDGER_SIGNING_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        CHAINLIT_AUTH_SECRET=secrets.token_urlsafe(48),
        ADMIN_EMAIL=ADMIN[0],
        ADMIN_PASSWORD=ADMIN[1],
        **({"REDIS_URL": REDIS_URL} if channel == "redis" else {}),
    )
    for replica in ("a", "b"):
        (tmp_path / replica).mkdir()
    with (
        running_app(tmp_path / "a", **common) as first,
        running_app(tmp_path / "b", **common) as second,
    ):
        user, password = f"u{secrets.token_hex(5)}@example.com", "a-long-enough-password"
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "auth", "add", user, "--password-stdin"],
            input=password.encode(), check=True, cwd=ROOT,
            env=app_environment(tmp_path / "a", **common),
        )  # fmt: skip
        chat = ChatSession(first, await login(first, user, password))
        await chat.connect()
        seen = len(chat.events)
        admin = ChatSession(second, await login(second, *ADMIN))
        await admin.connect()
        await admin.send(f"/grant {user} 7 from the other replica")
        await admin.close()
        await chat.wait_until(badge_shows(WELCOME + 7 * UNITS_PER_CREDIT), seen, timeout=10)
        await chat.close()


async def test_a_tab_that_reconnects_still_hears(app: RunningApp) -> None:
    """The socket drops and the browser reconnects to the same session (Chainlit keeps it for a
    while, and starts no new chat): the grant made after that still reaches the badge."""
    user, password = await new_user(app)
    tab = await open_chat(app, user, password)
    await tab.close()
    again = ChatSession(app.base_url, tab.cookies, session_id=tab.session_id)
    await again.connect(restoring=True)
    await again.wait_for("task_end")  # Chainlit has taken the reconnection
    admin = await open_chat(app, *ADMIN)
    await admin.send(f"/grant {user} 3 after a reconnect")
    await admin.close()
    await again.wait_until(badge_shows(WELCOME + 3 * UNITS_PER_CREDIT), timeout=10)
    await again.close()

"""Administrators end sessions and disable accounts from the chat: `/disable`, `/enable`, `/logout`."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from credits.store import Ledger
from settings import ROOT
from tests.e2e.client import ChatSession, login
from tests.e2e.conftest import ADMIN, RunningApp, new_user, open_chat
from tests.e2e.process import app_environment
from tests.e2e.test_commands import said
from tests.e2e.test_sessions import ended

pytestmark = pytest.mark.e2e


async def test_an_admin_disables_and_enables_someone(app: RunningApp, ledger: Ledger) -> None:
    user, password = await new_user(app)
    theirs = await open_chat(app, user, password)
    await asyncio.sleep(1.1)  # tokens count by the second they were issued
    admin = await open_chat(app, *ADMIN)
    try:
        done = said(await admin.send(f"/disable {user} too many complaints"))
        assert f"**{user} is disabled** (too many complaints)" in done
        assert "0 running piece(s) of work were stopped" in done
        assert await ended(theirs)
        with pytest.raises(httpx.HTTPStatusError):
            await login(app.base_url, user, password)
        assert (await ledger.balance(user)).available > 0  # their credits stay

        assert f"**{user} may sign in again.**" in said(await admin.send(f"/enable {user}"))
        back = ChatSession(app.base_url, await login(app.base_url, user, password))
        await back.connect()
        await asyncio.sleep(1.1)
        assert "sessions have ended" in said(await admin.send(f"/logout {user}"))
        assert await ended(back)
    finally:
        await admin.close()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("/disable {user}", "Say why"),
        ("/disable", "Usage: /disable"),
        ("/disable nobody@example.com spam", "There is no user 'nobody@example.com'"),
        ("/disable {admin} testing", "Not your own account"),
        ("/logout {admin}", "Not your own account"),
    ],
)
async def test_a_bad_access_command_is_refused_and_changes_nothing(
    app: RunningApp, text: str, why: str
) -> None:
    user, password = await new_user(app)
    admin = await open_chat(app, *ADMIN)
    try:
        refusal = said(await admin.send(text.format(user=user, admin=ADMIN[0])))
    finally:
        await admin.close()
    assert why in refusal and "Nothing was changed." in refusal
    await login(app.base_url, user, password)  # still signs in
    await login(app.base_url, *ADMIN)


async def test_someone_who_is_not_an_admin_cannot_disable(app: RunningApp) -> None:
    user, password = await new_user(app)
    victim, victims_password = await new_user(app)
    chat = await open_chat(app, user, password)
    try:
        for text in (f"/disable {victim} because", f"/logout {victim}"):
            assert "Only administrators can use" in said(await chat.send(text))
    finally:
        await chat.close()
    await login(app.base_url, victim, victims_password)


async def test_an_admin_invites_someone_once(app: RunningApp) -> None:
    admin = await open_chat(app, *ADMIN)
    try:
        done = said(await admin.send("/invite Zoe@Example.com"))
        assert "**zoe@example.com is invited**" in done
        again = said(await admin.send("/invite zoe@example.com"))
        assert "invited already" in again and "Nothing was changed" in again
        bad = said(await admin.send("/invite not an email"))
        assert "not an email address" in bad
    finally:
        await admin.close()
    listed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "auth", "invitations"], cwd=ROOT, capture_output=True, text=True,
        env=app_environment(app.data_dir), check=True,
    )  # fmt: skip
    assert listed.stdout.count("zoe@example.com") == 1 and "not used yet" in listed.stdout

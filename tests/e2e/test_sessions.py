"""The operator ends sessions: `python -m auth logout`, `disable`, `enable`, and a password change.
A revoked token stops working on its next HTTP request and its next socket.io event or connect."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import socketio

from settings import ROOT
from tests.e2e.client import ChatSession, login
from tests.e2e.process import app_environment, running_app

pytestmark = pytest.mark.e2e
ADMIN = ("admin@example.com", "admin-password-for-tests")


@pytest.fixture(scope="module")
def sessions_app() -> Iterator[tuple[str, Path]]:
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-sessions-"))
    with running_app(data_dir, ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1]) as base_url:
        yield base_url, data_dir


def operator(data_dir: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "auth", *args], cwd=ROOT, env=app_environment(data_dir),
        input=stdin, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


async def person(base_url: str, data_dir: Path, name: str) -> tuple[str, str]:
    who, password = f"{name}@example.com", "a-long-enough-password"
    await asyncio.to_thread(
        operator, data_dir, "add", who, "--password-stdin", stdin=password + "\n"
    )
    return who, password


async def user_endpoint(base_url: str, cookies: httpx.Cookies) -> int:
    async with httpx.AsyncClient(base_url=base_url, cookies=cookies) as http:
        return (await http.get("/user")).status_code


async def ended(chat: ChatSession) -> bool:
    """The open session is disconnected on its next event."""
    await chat.sio.emit("chat_settings_change", {"model": "auto"})
    for _ in range(50):
        if not chat.sio.connected:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_signing_out_everywhere_ends_open_sessions(sessions_app: tuple[str, Path]) -> None:
    base_url, data_dir = sessions_app
    who, password = await person(base_url, data_dir, "everywhere")
    cookies = await login(base_url, who, password)
    chat = ChatSession(base_url, cookies)
    await chat.connect()
    assert await user_endpoint(base_url, cookies) == 200
    await asyncio.sleep(1.1)  # tokens count by the second they were issued
    assert "sessions ended" in await asyncio.to_thread(operator, data_dir, "logout", who)
    await asyncio.sleep(2.1)  # the app's cache of standings
    assert await user_endpoint(base_url, cookies) == 401
    assert await ended(chat)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await ChatSession(base_url, cookies).connect()
    fresh = await login(base_url, who, password)  # signing in again works
    assert await user_endpoint(base_url, fresh) == 200


async def test_a_disabled_account_cannot_sign_in_until_enabled(
    sessions_app: tuple[str, Path],
) -> None:
    base_url, data_dir = sessions_app
    who, password = await person(base_url, data_dir, "disabled")
    cookies = await login(base_url, who, password)
    chat = ChatSession(base_url, cookies)
    await chat.connect()
    await asyncio.sleep(1.1)
    said = await asyncio.to_thread(operator, data_dir, "disable", who)
    assert "disabled; its sessions ended; 0 hold(s) released" in said
    await asyncio.sleep(2.1)
    assert await ended(chat)
    with pytest.raises(httpx.HTTPStatusError):
        await login(base_url, who, password)
    await asyncio.to_thread(operator, data_dir, "enable", who)
    await asyncio.sleep(2.1)
    assert await user_endpoint(base_url, await login(base_url, who, password)) == 200


async def test_a_password_change_ends_the_other_sessions(sessions_app: tuple[str, Path]) -> None:
    base_url, data_dir = sessions_app
    who, password = await person(base_url, data_dir, "changer")
    old = await login(base_url, who, password)
    await asyncio.sleep(1.1)
    await asyncio.to_thread(
        operator, data_dir, "passwd", who, "--password-stdin", stdin="another-long-password\n"
    )
    await asyncio.sleep(2.1)
    assert await user_endpoint(base_url, old) == 401
    new = await login(base_url, who, "another-long-password")
    assert await user_endpoint(base_url, new) == 200


async def test_a_password_changed_from_the_browser_ends_the_other_sessions_and_keeps_this_one(
    sessions_app: tuple[str, Path],
) -> None:
    base_url, data_dir = sessions_app
    who, password = await person(base_url, data_dir, "browser-changer")
    elsewhere = await login(base_url, who, password)
    chat = ChatSession(base_url, elsewhere)
    await chat.connect()
    await asyncio.sleep(1.1)
    async with httpx.AsyncClient(
        base_url=base_url, cookies=await login(base_url, who, password)
    ) as here:
        page = await here.get("/auth/password")
        assert page.status_code == 200 and "name='current'" in page.text
        change = {"current": password, "new": "a-new-long-password", "again": "a-new-long-password"}
        for wrong, said in (
            ({**change, "current": "not-my-password"}, "current password is wrong"),
            ({**change, "again": "something-else-x"}, "differ"),
            ({**change, "new": "short", "again": "short"}, "at least 8"),
        ):
            refused = await here.post("/auth/password", data=wrong)
            assert refused.status_code == 400 and said in refused.text
        await asyncio.sleep(2.1)
        assert await user_endpoint(base_url, elsewhere) == 200  # a refusal changed nothing
        done = await here.post("/auth/password", data=change)
        assert done.status_code == 200 and "other sessions have ended" in done.text
        await asyncio.sleep(2.1)
        assert (await here.get("/user")).status_code == 200  # this browser stays signed in
    assert await user_endpoint(base_url, elsewhere) == 401
    assert await ended(chat)
    with pytest.raises(httpx.HTTPStatusError):
        await login(base_url, who, password)
    assert await user_endpoint(base_url, await login(base_url, who, "a-new-long-password")) == 200
    async with httpx.AsyncClient(base_url=base_url) as stranger:  # no session: to the sign-in page
        assert (await stranger.post("/auth/password", data=change)).status_code == 401

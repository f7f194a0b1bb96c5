"""The web edge of the real app: only the public origin may drive a session from a browser, large
requests are refused before they are read, an over-long message is never stored."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import socketio

from tests.e2e.client import ChatSession, cookie_header, login
from tests.e2e.process import running_app

pytestmark = pytest.mark.e2e
PUBLIC = "https://chat.example.com"
ADMIN = ("admin@example.com", "admin-password-for-tests")


@pytest.fixture(scope="module")
def edge_app() -> Iterator[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-edge-"))
    with running_app(
        data_dir, ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1], CHAINLIT_URL=PUBLIC,
        MAX_REQUEST_MB="1", MAX_MESSAGE_CHARS="2000",
    ) as base_url:  # fmt: skip
        yield base_url


async def test_only_the_public_origin_may_open_a_session(edge_app: str) -> None:
    cookies = await login(edge_app, *ADMIN)
    stranger = ChatSession(edge_app, cookies)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await stranger.connect(origin="https://evil.example")
    ours = ChatSession(edge_app, cookies)
    await ours.connect(origin=PUBLIC)
    await ours.close()


async def test_the_session_cookie_is_secure_httponly_lax_for_seven_days(edge_app: str) -> None:
    async with httpx.AsyncClient(base_url=edge_app) as http:
        answer = await http.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert answer.status_code == 200
    cookie = answer.headers["set-cookie"].lower()
    assert "access_token=" in cookie and "secure" in cookie and "httponly" in cookie
    assert "samesite=lax" in cookie and "max-age=604800" in cookie


async def test_cors_answers_the_public_origin_alone(edge_app: str) -> None:
    async with httpx.AsyncClient(base_url=edge_app) as http:
        evil = await http.get("/healthz", headers={"Origin": "https://evil.example"})
        ours = await http.get("/healthz", headers={"Origin": PUBLIC})
    assert "access-control-allow-origin" not in evil.headers
    assert ours.headers["access-control-allow-origin"] == PUBLIC
    assert ours.headers["access-control-allow-credentials"] == "true"
    assert ours.headers["x-frame-options"] == "DENY"


def test_a_large_upload_is_refused_before_its_body_is_sent(edge_app: str) -> None:
    """The headers alone declare 64 MB: the answer comes at once, the body is never read."""
    url = urlsplit(edge_app)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        started = time.monotonic()
        conn.sendall(
            b"POST /project/file?session_id=x HTTP/1.1\r\nHost: app\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {64 * 2**20}\r\n\r\n".encode()
        )
        answer = conn.recv(4096)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert waited < 5


async def test_an_over_long_message_is_refused_and_never_stored(edge_app: str) -> None:
    """Sent first (it would name the thread) and then a short one: the long one is refused, and
    neither the thread's messages nor its name keep it."""
    cookies = await login(edge_app, *ADMIN)
    chat = ChatSession(edge_app, cookies)
    await chat.connect()
    try:
        events = await chat.send("x" * 2001)
        refusals = [d for n, d in events if n == "new_message" and d.get("isError")]
        assert refusals and "the limit is 2,000" in refusals[0]["output"]
        await chat.send("A short one.")
    finally:
        await chat.close()
    assert chat.thread_id
    # The cookie is Secure (the public URL is https), so it is sent here by hand, over plain http.
    async with httpx.AsyncClient(base_url=edge_app) as http:
        thread = await http.get(
            f"/project/thread/{chat.thread_id}", headers={"Cookie": cookie_header(cookies)}
        )
    assert thread.status_code == 200, thread.text
    kept = [s["output"] for s in thread.json()["steps"] if s["type"] == "user_message"]
    assert kept == ["A short one."]
    assert thread.json()["name"] != "x" * 2001


async def test_a_login_flood_from_one_address_is_throttled(edge_app: str) -> None:
    """25 wrong passwords at one account at once: refused (401) up to the account's limit (10 a
    minute, counting this module's other sign-ins), the rest 429 with Retry-After, each held a
    second; then the right password too: nothing is checked any more."""
    async with httpx.AsyncClient(base_url=edge_app, timeout=30) as http:

        async def guess() -> httpx.Response:
            return await http.post("/login", data={"username": ADMIN[0], "password": "guess"})

        answers = await asyncio.gather(*(guess() for _ in range(25)))
        started = time.monotonic()
        right = await http.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
        held = time.monotonic() - started
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {401, 429} and 5 <= statuses.count(401) <= 10
    assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1
    assert held >= 1.0

"""The guarded HTTP client of a task's tools: private addresses refused, limits kept."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from agents.fetch import FetchRefused, fetch, networks

LOOPBACK = networks("127.0.0.1")


async def endless(request: Request) -> Response:
    async def forever():  # type: ignore[no-untyped-def]
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0)

    return StreamingResponse(forever())


async def slow(request: Request) -> Response:
    await asyncio.sleep(5)
    return PlainTextResponse("late")


def site() -> Starlette:
    return Starlette(
        routes=[
            Route("/page", lambda r: PlainTextResponse(f"hello from {r.headers['host']}")),
            Route("/endless", endless),
            Route("/slow", slow),
            Route("/to-private", lambda r: RedirectResponse("http://10.1.2.3/secret")),
            Route("/loop", lambda r: RedirectResponse("/loop")),
            Route("/hop", lambda r: RedirectResponse("/page")),
        ]
    )


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    running = uvicorn.Server(uvicorn.Config(site(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.01)
    yield port
    running.should_exit = True
    thread.join(5)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:{port}/page", "private, loopback or reserved"),
        ("http://localhost:{port}/page", "private, loopback or reserved"),
        ("http://[::1]:{port}/page", "private, loopback or reserved"),
        ("http://10.0.0.7/", "private, loopback or reserved"),
        ("http://192.168.1.1/", "private, loopback or reserved"),
        ("http://169.254.169.254/latest/meta-data/", "private, loopback or reserved"),
        ("http://0.0.0.0:{port}/", "private, loopback or reserved"),
        ("http://[::ffff:127.0.0.1]:{port}/page", "private, loopback or reserved"),
        ("http://100.64.0.1/", "private, loopback or reserved"),
        ("file:///etc/passwd", "Only http and https"),
        ("ftp://example.com/x", "Only http and https"),
        ("http://user:pw@example.com/", "user name or password"),
        ("http://no-such-host.invalid/", "could not be resolved"),
    ],
)
async def test_private_addresses_and_other_schemes_are_refused(
    server: int, url: str, said: str
) -> None:
    with pytest.raises(FetchRefused, match=said):
        await fetch(url.format(port=server), timeout_s=3)


async def test_an_allowed_network_is_fetched_with_its_host_name_kept(server: int) -> None:
    got = await fetch(f"http://localhost:{server}/page", allowed=LOOPBACK)
    assert got.status == 200 and got.text == f"hello from localhost:{server}" and not got.cut


async def test_a_redirect_is_checked_at_every_hop(server: int) -> None:
    hop = await fetch(f"http://127.0.0.1:{server}/hop", allowed=LOOPBACK)
    assert hop.url.endswith("/page") and hop.text.startswith("hello")
    with pytest.raises(FetchRefused, match=r"10\.1\.2\.3, a private"):
        await fetch(f"http://127.0.0.1:{server}/to-private", allowed=LOOPBACK)
    with pytest.raises(FetchRefused, match="redirected more than 5 times"):
        await fetch(f"http://127.0.0.1:{server}/loop", allowed=LOOPBACK)


async def test_a_body_that_goes_on_is_cut_and_a_slow_one_given_up(server: int) -> None:
    got = await fetch(f"http://127.0.0.1:{server}/endless", most_bytes=100_000, allowed=LOOPBACK)
    assert got.cut and len(got.body) == 100_000
    with pytest.raises(FetchRefused, match="did not answer within 1 s"):
        await fetch(f"http://127.0.0.1:{server}/slow", timeout_s=1, allowed=LOOPBACK)

"""The body limit and security headers, through the ASGI middleware in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from api.edge import Edge, public_origin

LIMIT = 1000


def app_with_edge() -> tuple[FastAPI, list[int]]:
    """An app with the edge added as the app adds it to Chainlit's (inside Starlette's error
    handler, which would answer 500 to an exception it saw)."""
    app = FastAPI()
    read: list[int] = []

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        read.append(len(body))
        return {"bytes": len(body)}

    app.add_middleware(Edge, max_body_bytes=LIMIT)
    return app, read


async def post(edge: FastAPI, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=edge)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.post("/echo", **kwargs)  # type: ignore[arg-type]


async def test_a_body_within_the_limit_passes_with_the_security_headers() -> None:
    edge, read = app_with_edge()
    response = await post(edge, content=b"x" * LIMIT)
    assert response.status_code == 200 and response.json() == {"bytes": LIMIT}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert read == [LIMIT]


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    edge, read = app_with_edge()
    response = await post(edge, content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert "larger than 1,000 bytes" in response.json()["detail"]
    assert read == []  # the route never ran


async def test_a_streamed_body_that_grows_past_the_limit_is_cut_off() -> None:
    edge, read = app_with_edge()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 300  # no Content-Length: sent chunked

    response = await post(edge, content=chunks())
    assert response.status_code == 413
    assert read == []


async def test_a_malformed_length_is_refused() -> None:
    edge, read = app_with_edge()
    response = await post(edge, content=b"x", headers={"content-length": "-5"})
    assert response.status_code == 413 and read == []


def test_the_public_origin_comes_from_chainlit_url() -> None:
    assert public_origin("https://Chat.Example.com/some/path") == "https://chat.example.com"
    assert public_origin("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert public_origin(None) is None
    with pytest.raises(ValueError):
        public_origin("chat.example.com")

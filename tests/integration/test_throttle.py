"""Sign-in attempts counted per address and per account, in memory and in Redis (one count for
every replica)."""

from __future__ import annotations

import os
import time
import uuid

import httpx
import pytest
from fastapi import FastAPI, Form

from auth.throttle import Throttle, ThrottledLogin

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["memory", "redis"])
def redis_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "memory" else REDIS_URL


async def test_an_address_is_stopped_after_its_attempts(redis_url: str | None) -> None:
    throttle = Throttle(redis_url, "5/minute", "100/minute")
    address = f"10.9.{uuid.uuid4().int % 250}.1"  # fresh keys in a shared Redis
    admitted = [await throttle.admit(address, f"u{i}@x") for i in range(7)]
    assert admitted[:5] == [None] * 5
    assert all(wait is not None and 1 <= wait <= 60 for wait in admitted[5:])
    assert await throttle.admit(f"{address}0", "u0@x") is None  # another address is not held


async def test_one_account_is_stopped_whatever_the_address(redis_url: str | None) -> None:
    throttle = Throttle(redis_url, "100/minute", "3/minute")
    account = f"victim-{uuid.uuid4().hex[:8]}@x"
    admitted = [await throttle.admit(f"10.0.0.{i}", account) for i in range(5)]
    assert admitted[:3] == [None] * 3 and None not in admitted[3:]


async def test_replicas_count_together_in_redis() -> None:
    first, second = (Throttle(REDIS_URL, "4/minute", "100/minute") for _ in range(2))
    address = f"10.8.{uuid.uuid4().int % 250}.2"
    assert [await first.admit(address, "a@x") for _ in range(2)] == [None, None]
    assert [await second.admit(address, "a@x") for _ in range(2)] == [None, None]
    assert await first.admit(address, "a@x") is not None


async def test_a_throttled_login_is_answered_429_and_never_checked() -> None:
    app = FastAPI()
    checked: list[str] = []

    @app.post("/login")
    async def login(username: str = Form(), password: str = Form()) -> dict[str, str]:
        checked.append(username)
        return {"ok": username}

    app.add_middleware(
        ThrottledLogin, throttle=Throttle(None, "3/minute", "100/minute"), hold_s=0.2
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        answers, took = [], []
        for _ in range(5):
            started = time.perf_counter()
            answers.append(
                await client.post("/login", data={"username": "Ann@X", "password": "wrong"})
            )
            took.append(time.perf_counter() - started)
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert checked == ["Ann@X"] * 3  # the form reached the route whole, three times
    assert min(took[3:]) >= 0.2 > max(took[:3])  # over the limit: held before the answer
    assert int(answers[3].headers["retry-after"]) >= 1
    assert "nothing was checked" in answers[3].json()["detail"]

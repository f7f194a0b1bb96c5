"""`GET /healthz` through the ASGI app: 200 when ready, 503 with the reason when not."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from agents.catalog import load_catalog
from agents.local import LocalRunner
from agents.providers import HealthCheck
from api import health
from settings import ROOT
from storage.engine import create_engine
from tests.fakes.openai_server import FakeOpenAI


async def get_health(database_url: str, env: dict[str, str], default: str) -> httpx.Response:
    catalog = load_catalog(ROOT / "models.toml", env.get, default)
    runner = LocalRunner(ROOT / "unused.gguf", 512, 1)  # never loaded here
    engine = create_engine(database_url)
    app = FastAPI()
    app.include_router(health.router(engine, catalog, HealthCheck(runner)))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get("/healthz")
    finally:
        await engine.dispose()


async def test_ready_when_the_database_and_the_default_provider_answer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake = FakeOpenAI().start()
    try:
        response = await get_health(
            f"sqlite+aiosqlite:///{tmp_path}/h.db", {"VLLM_BASE_URL": fake.base_url},
            "vllm-llama-3.1-8b",
        )  # fmt: skip
    finally:
        fake.stop()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["providers"]["vllm"] == {
        "ok": True,
        "detail": "reachable",
    }
    assert body["providers"]["local"] == {"ok": False, "detail": "not loaded"}


async def test_unready_when_the_default_provider_is_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    down = FakeOpenAI().start()
    base_url = down.base_url
    down.stop()
    response = await get_health(
        f"sqlite+aiosqlite:///{tmp_path}/h.db", {"VLLM_BASE_URL": base_url}, "vllm-llama-3.1-8b"
    )
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["database"]["ok"] is True
    assert body["providers"]["vllm"]["ok"] is False
    assert body["providers"]["vllm"]["detail"].startswith("unreachable")


async def test_unready_when_the_database_does_not_answer() -> None:
    response = await get_health("postgresql+asyncpg://nobody@127.0.0.1:1/none", {}, "smollm2-135m")
    assert response.status_code == 503
    assert response.json()["database"]["ok"] is False

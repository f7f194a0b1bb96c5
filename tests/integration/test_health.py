"""`GET /healthz` through the ASGI app: 200 when ready, 503 with the reason when not."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from agents.catalog import load_catalog
from agents.local import LocalRunner
from agents.providers import HealthCheck
from api import health
from credits.errors import CreditsError
from credits.store import Ledger
from settings import ROOT
from storage.engine import create_engine
from tests.credits.test_cancellation import die
from tests.fakes.openai_server import FakeOpenAI
from ui.channels import InProcess
from ui.live import Live, News


async def get_health(
    database_url: str,
    env: dict[str, str],
    default: str,
    kill_writer: bool = False,
    live: Live | None = None,
) -> httpx.Response:
    catalog = load_catalog(ROOT / "models.toml", env.get, default)
    runner = LocalRunner(ROOT / "unused.gguf", 512, 1)  # never loaded here
    engine = create_engine(database_url)
    home = Path(tempfile.mkdtemp(prefix="health-ledger-"))
    ledger = Ledger(f"sqlite+aiosqlite:///{home / 'ledger.db'}", home, Ed25519PrivateKey.generate())
    await ledger.start(background=False)
    if kill_writer:
        with contextlib.suppress(CreditsError):
            await ledger._write(die)
        assert ledger._writer is not None
        ledger._writer.thread.join(timeout=5)
    app = FastAPI()
    checks = (engine, catalog, HealthCheck(runner), ledger)
    app.include_router(health.router(*checks, live.health) if live else health.router(*checks))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.get("/healthz")
    finally:
        await engine.dispose()
        await ledger.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_unready_when_the_ledger_writer_is_dead(tmp_path) -> None:  # type: ignore[no-untyped-def]
    response = await get_health(
        f"sqlite+aiosqlite:///{tmp_path}/h.db", {}, "smollm2-135m", kill_writer=True
    )
    assert response.status_code == 503
    assert response.json()["ledger"] == {
        "ok": False,
        "detail": "the ledger's writer thread is not running",
    }


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
    assert body["ledger"] == {"ok": True, "detail": "takes writes"}


async def test_live_updates_not_heard_are_reported_without_making_it_unready(
    tmp_path: Path,
) -> None:
    """A replica whose listener is down (its channel's server restarting) still serves chats:
    /healthz says so without changing whether it is ready; once it listens, it says through
    what."""

    async def nothing(news: News) -> None:
        return None

    live = Live(InProcess(), nothing)
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    down = await get_health(url, {}, "smollm2-135m", live=live)
    assert down.json()["live_updates"] == {
        "ok": False,
        "detail": "not listening to this process: trying again",
    }
    live.start()
    await asyncio.sleep(0)  # the listener's first step
    up = await get_health(url, {}, "smollm2-135m", live=live)
    await live.close()
    assert up.json()["live_updates"] == {"ok": True, "detail": "this process"}
    assert down.status_code == up.status_code


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

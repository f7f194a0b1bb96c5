"""`GET /healthz`: is the database answering, does the ledger take writes, and is the default model's
provider ready? It also says whether updates from outside a chat are being heard (ui/live.py) and
whether payment notifications are being applied (payments/inbox.py) and crypto payments watched
(payments/watcher.py): none of them makes a replica unready, as it still serves chats."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.catalog import Catalog
from agents.providers import Health, HealthCheck
from credits.store import Ledger

# The ledger's answer is a durable write: anyone may ask for it, so it is not redone every time.
LEDGER_TTL_S = 2.0


def router(
    engine: AsyncEngine,
    catalog: Catalog,
    check: HealthCheck,
    ledger: Ledger,
    live: Callable[[], Health] = lambda: Health(True, "not used"),
    payments: Callable[[], Health] = lambda: Health(True, "not used"),
    chain: Callable[[], Health] = lambda: Health(True, "not used"),
    tasks: Callable[[], Health] = lambda: Health(True, "not used"),
) -> APIRouter:
    routes = APIRouter()
    asked: list[tuple[float, str | None]] = []  # when the ledger was last asked, and its answer

    async def ledger_problem() -> str | None:
        if not asked or time.monotonic() - asked[0][0] > LEDGER_TTL_S:
            asked[:] = [(time.monotonic(), await ledger.problem())]
        return asked[0][1]

    @routes.get("/healthz", include_in_schema=True)
    async def healthz() -> JSONResponse:
        database = await _database(engine)
        problem = await ledger_problem()
        providers = await check.providers(catalog)
        default = catalog.models[catalog.default_id].provider.id
        ready = (
            database.ok and problem is None and providers.get(default, Health(False, "disabled")).ok
        )
        body = {
            "status": "ok" if ready else "unavailable",
            "database": {"ok": database.ok, "detail": database.detail},
            "ledger": {"ok": problem is None, "detail": problem or "takes writes"},
            "default_model": catalog.default_id,
            "providers": {pid: {"ok": h.ok, "detail": h.detail} for pid, h in providers.items()},
            "live_updates": {"ok": (heard := live()).ok, "detail": heard.detail},
            "payment_notifications": {"ok": (inbox := payments()).ok, "detail": inbox.detail},
            "crypto_watcher": {"ok": (watcher := chain()).ok, "detail": watcher.detail},
            "task_worker": {"ok": (worker := tasks()).ok, "detail": worker.detail},
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    return routes


async def _database(engine: AsyncEngine) -> Health:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return Health(False, f"{type(exc).__name__}")
    return Health(True, engine.dialect.name)

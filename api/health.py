"""`GET /healthz`: is the database answering and is the default model's provider ready?"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.catalog import Catalog
from agents.providers import Health, HealthCheck


def router(engine: AsyncEngine, catalog: Catalog, check: HealthCheck) -> APIRouter:
    routes = APIRouter()

    @routes.get("/healthz", include_in_schema=True)
    async def healthz() -> JSONResponse:
        database = await _database(engine)
        providers = await check.providers(catalog)
        default = catalog.models[catalog.default_id].provider.id
        ready = database.ok and providers.get(default, Health(False, "disabled")).ok
        body = {
            "status": "ok" if ready else "unavailable",
            "database": {"ok": database.ok, "detail": database.detail},
            "default_model": catalog.default_id,
            "providers": {pid: {"ok": h.ok, "detail": h.detail} for pid, h in providers.items()},
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

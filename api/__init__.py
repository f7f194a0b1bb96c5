"""Our HTTP routes, mounted on Chainlit's FastAPI app."""

from fastapi import APIRouter, FastAPI


def mount(app: FastAPI, router: APIRouter) -> None:
    """Add `router`'s routes ahead of Chainlit's catch-all page route, which would shadow them."""
    before = len(app.router.routes)
    app.include_router(router)
    added = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = added

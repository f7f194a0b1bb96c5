"""Generated images over HTTP, to their owner only.

    GET /images/{id}            the image as it was made (?download=1: as a file to save)
    GET /images/{id}/thumb      its thumbnail (JPEG)

Signed out: 401. Another person's image, an id that does not exist and a file lost or changed
behind the app's back all answer the same 404, so ids cannot be probed.
"""

from __future__ import annotations

from chainlit.auth.cookie import get_token_from_cookies
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.sessions import Standings
from storage import images
from storage.images import Shelf, Variant

NOT_FOUND = {"detail": "You have no such image."}


def router(engine: AsyncEngine, shelf: Shelf, standings: Standings, secret: str) -> APIRouter:
    routes = APIRouter()

    async def serve(image_id: str, variant: Variant, request: Request) -> Response:
        token = get_token_from_cookies(dict(request.cookies))
        owner = await standings.account_of(token, secret) if token else None
        if owner is None:
            return JSONResponse({"detail": "Sign in to see your images."}, 401)
        file = await images.fetch(engine, shelf, image_id, owner, variant)
        if file is None:
            return JSONResponse(NOT_FOUND, 404)
        etag = f'"{file.sha256}"'
        headers = {
            "Cache-Control": "private, max-age=31536000, immutable",
            "ETag": etag,
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'",
        }
        if request.query_params.get("download"):
            headers["Content-Disposition"] = f'attachment; filename="{file.name}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(file.data, media_type=file.content_type, headers=headers)

    @routes.get("/images/{image_id}", include_in_schema=False)
    async def full(image_id: str, request: Request) -> Response:
        return await serve(image_id, "full", request)

    @routes.get("/images/{image_id}/thumb", include_in_schema=False)
    async def thumb(image_id: str, request: Request) -> Response:
        return await serve(image_id, "thumb", request)

    return routes

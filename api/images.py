"""Images and the files of chats over HTTP, to their owner only.

    GET /images/{id}            a generated image as it was made (?download=1: as a file to save)
    GET /images/{id}/thumb      its thumbnail (JPEG)
    GET /element-files/{key}    a file of a chat's element (an uploaded photo, a chart), for the
                                owner of its thread (storage/element_files.py)

Signed out: 401. Another person's file, one that does not exist and one lost or changed behind
the app's back all answer the same 404, so ids cannot be probed. Files are served as what they
are and never run in the page (nosniff, a Content-Security-Policy that allows nothing).
"""

from __future__ import annotations

from chainlit.auth.cookie import get_token_from_cookies
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.sessions import Standings
from storage import images
from storage.element_files import ROUTE, owned_file
from storage.images import Shelf, Variant

NOT_FOUND = {"detail": "You have no such image."}
SAFE = {"Content-Security-Policy": "default-src 'none'"}  # nosniff: api/edge.py, on every answer


def router(engine: AsyncEngine, shelf: Shelf, standings: Standings, secret: str) -> APIRouter:
    routes = APIRouter()

    async def signed_in(request: Request) -> str | None:
        token = get_token_from_cookies(dict(request.cookies))
        return await standings.account_of(token, secret) if token else None

    async def serve(image_id: str, variant: Variant, request: Request) -> Response:
        owner = await signed_in(request)
        if owner is None:
            return JSONResponse({"detail": "Sign in to see your images."}, 401)
        file = await images.fetch(engine, shelf, image_id, owner, variant)
        if file is None:
            return JSONResponse(NOT_FOUND, 404)
        etag = f'"{file.sha256}"'
        headers = {
            "Cache-Control": "private, max-age=31536000, immutable",
            "ETag": etag,
            **SAFE,
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

    @routes.get(ROUTE + "{key:path}", include_in_schema=False)
    async def element_file(key: str, request: Request) -> Response:
        owner = await signed_in(request)
        if owner is None:
            return JSONResponse({"detail": "Sign in to see your files."}, 401)
        file = await owned_file(engine, shelf, key, owner)
        if file is None:
            return JSONResponse({"detail": "You have no such file."}, 404)
        headers = {"Cache-Control": "private, max-age=3600", **SAFE}
        if not file.mime.startswith("image/"):
            headers["Content-Disposition"] = "attachment"
        return Response(file.data, media_type=file.mime, headers=headers)

    return routes

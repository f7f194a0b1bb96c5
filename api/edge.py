"""The web edge: who may drive a signed-in person's session from a browser, how large a request may
be, and the headers every response carries.

- Origins: with `CHAINLIT_URL` set, its origin alone may make credentialed cross-origin requests
  (HTTP CORS) and open the socket.io connection; without it, only same-origin pages may. Chainlit's
  default echoed any origin with credentials and turned socket.io's origin check off, so a page on
  another site could drive a signed-in person's chat.
- Size: every request's body is limited before it is read: a declared `Content-Length` over the
  limit is refused at once, and a body that turns out longer while streaming is cut off (413).
  Socket.io frames are limited too (they carry messages, not files).
- Headers: nosniff, no framing by other sites, no referrer to other sites, a CSP the Chainlit UI
  works under (it needs inline styles and scripts of its own).
- The session cookie: HttpOnly and SameSite=Lax as Chainlit sets it, Secure whenever the public URL
  is https (Chainlit set it only with SameSite=None), and lasting `SESSION_DAYS`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.answers import send_json

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"frame-ancestors 'none'; object-src 'none'; base-uri 'self'; form-action 'self'",
    ),
]


def public_origin(public_url: str | None) -> str | None:
    """`scheme://host[:port]` of the app's public URL, or None when it is not set."""
    if not public_url:
        return None
    parts = urlsplit(public_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"CHAINLIT_URL must be an http(s) URL, not {public_url!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()


def restrict_origins(cors_origins: list[str], sio: Any, origin: str | None) -> None:
    """Allow `origin` alone (None: same-origin only) for CORS and for socket.io connections.

    `cors_origins` is the list Chainlit's CORS middleware was given (changed in place, before the
    first request builds the middleware); `sio` is Chainlit's socket.io server."""
    cors_origins[:] = [origin] if origin else []
    sio.eio.cors_allowed_origins = [origin] if origin else None  # None: same origin as the host


def secure_cookie(
    cookie_module: Any, project_config: Any, public_url: str | None, days: int
) -> None:
    """The session cookie's Secure flag and lifetime (Chainlit reads both when it sets one)."""
    if public_url and public_url.strip().lower().startswith("https://"):
        cookie_module._cookie_secure = True
    project_config.user_session_timeout = days * 86_400


class RequestTooLarge(Exception):
    """A request body went past the limit while it was read."""


class Edge:
    """ASGI middleware: the body limit and the security headers, on every HTTP response."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await self._refuse(send)
            return
        started = False
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise RequestTooLarge
            return message

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, limited, with_headers)
        except RequestTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        await send_json(
            send, 413,
            f"The request is larger than {self.max_body_bytes:,} bytes; nothing was kept.",
            SECURITY_HEADERS,
        )  # fmt: skip

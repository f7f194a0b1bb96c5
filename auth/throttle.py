"""Sign-in attempts, limited per address and per account, before any password is checked.

Each password check is Argon2 (~140 ms of CPU, 64 MiB): unthrottled, a flood of wrong passwords from
one address is a flood of CPU work, and a slow guess at one account from many addresses is a
password attack. So `POST /login` is counted per client address and per account named (moving
windows, the `limits` library: in this process's memory by default, in Redis when `REDIS_URL` is
set, so that every replica counts together). Past either limit the answer is 429 with
`Retry-After`, and no password is looked at. That answer is held for `hold_s` (1 s) first: an
attempt over the limit costs its sender a second and the server nothing (a sleep), where answering
at once let one address send hundreds a second and take the event loop from every chat
(bench/login_flood.py: turns 4x slower during a flood without the hold).

The address is the one the ASGI server reports: behind a TLS proxy, run the server so that it takes
the client's address from the proxy's forwarded headers (see the README).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs

from limits import RateLimitItem, parse, storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.answers import send_json
from auth.passwords import normalise


class Throttle:
    """Counts sign-in attempts; says how long to wait when there were too many."""

    def __init__(self, redis_url: str | None, per_address: str, per_account: str) -> None:
        where = f"async+{redis_url}" if redis_url else "async+memory://"
        options = {"implementation": "redispy"} if redis_url else {}
        self.limiter = MovingWindowRateLimiter(storage.storage_from_string(where, **options))
        self.per_address: RateLimitItem = parse(per_address)
        self.per_account: RateLimitItem = parse(per_account)

    async def admit(self, address: str, account: str) -> float | None:
        """Count one attempt; None when it may go ahead, else the seconds until it may."""
        checks = ((self.per_address, "address", address), (self.per_account, "account", account))
        for item, kind, key in checks:
            if not await self.limiter.hit(item, "login", kind, key):
                stats = await self.limiter.get_window_stats(item, "login", kind, key)
                return max(1.0, stats.reset_time - time.time())
        return None


class ThrottledLogin:
    """ASGI middleware: `POST <path>` goes through `throttle` first (the body is read here and
    handed on whole; the web edge has limited its size already)."""

    def __init__(
        self, app: ASGIApp, throttle: Throttle, path: str = "/login", hold_s: float = 1.0
    ) -> None:
        self.app = app
        self.throttle = throttle
        self.path = path
        self.hold_s = hold_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        form = parse_qs(body.decode("latin-1"))
        account = normalise((form.get("username") or [""])[0])[:320]
        address = (scope.get("client") or ("unknown", 0))[0]
        wait = await self.throttle.admit(address, account)
        if wait is not None:
            await asyncio.sleep(self.hold_s)
            await _too_many(send, wait)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # a disconnect, if the client goes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _too_many(send: Send, wait_s: float) -> None:
    seconds = int(wait_s + 0.999)
    detail = f"Too many sign-in attempts. Try again in {seconds} s; nothing was checked."
    await send_json(send, 429, detail, [(b"retry-after", str(seconds).encode())])

"""Whose sessions still count: an operator can disable an account or end all its sessions, and a
password change ends the others.

Chainlit's session is a signed token (JWT, with the time it was issued) in a cookie, good until it
expires; nothing looked at it again. Here each account has a standing: disabled or not, and the
second before which its tokens no longer count. It is checked on every HTTP request that carries a
token, on every socket.io connection, and before every socket.io event of an open session (which
is then disconnected), so a revoked token stops working on its next use.

Each process reads every standing (a row per account an operator or a password change touched:
a few rows, or some thousands in a big install) in one statement at most every `REFRESH_S`, which
bounds how late another replica notices; a change made here counts here at once. With hundreds of
sessions open that is one read every two seconds, not one per account; and a token's signature is
checked once, its expiry at every use.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt
from sqlalchemy import Boolean, Column, DateTime, Float, MetaData, Table, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from api.answers import send_json

REFRESH_S = 2.0
TOKENS_KEPT = 10_000  # checked tokens remembered (their signature is not checked again)

metadata = MetaData()
standing_table = Table(
    "account_standing",
    metadata,
    Column("account", Text, primary_key=True),
    Column("disabled", Boolean, nullable=False),
    Column("sessions_after", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Standing:
    disabled: bool = False
    sessions_after: float = 0.0  # tokens issued before this second do not count

    def admits(self, issued_at: float) -> bool:
        return not self.disabled and issued_at >= self.sessions_after


class Standings:
    """The accounts' standings, as this process last read them; changed by the operator."""

    def __init__(self, engine: AsyncEngine, refresh_s: float = REFRESH_S) -> None:
        self.engine = engine
        self.refresh_s = refresh_s
        self._known: dict[str, Standing] = {}  # account -> standing, for those that have one
        self._read_at = -float("inf")  # monotonic time the last read started
        self._changed_at = -float("inf")  # ... and the last change made here
        self._reading: asyncio.Future[None] | None = None
        # (token, secret) -> (account, iat, exp) of the tokens found valid
        self._tokens: dict[tuple[str, str], tuple[str, float, float]] = {}

    async def of(self, account: str) -> Standing:
        if time.monotonic() - self._read_at >= self.refresh_s:
            await self._refresh()
        return self._known.get(account, Standing())

    async def _refresh(self) -> None:
        """Read every standing; callers arriving meanwhile share the read (and a caller cancelled
        meanwhile leaves it to finish for the others)."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read_all())
        await asyncio.shield(self._reading)

    async def _read_all(self) -> None:
        started = time.monotonic()
        t = standing_table
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(t.c.account, t.c.disabled, t.c.sessions_after))).all()
        if self._changed_at >= started:  # may have missed a change made here: the next reads
            return
        self._known = {row[0]: Standing(bool(row[1]), float(row[2])) for row in rows}
        self._read_at = started

    async def admits(self, token: str, secret: str) -> bool:
        """Whether a session token still counts: valid, and its account's standing admits it.
        (An invalid or expired token is Chainlit's to refuse; it is let through here.)"""
        signed = self._signed(token, secret)
        return signed is None or (await self.of(signed[0])).admits(signed[1])

    async def account_of(self, token: str, secret: str) -> str | None:
        """The account of a session token that is valid and still counts; else None."""
        signed = self._signed(token, secret)
        if signed is None or not (await self.of(signed[0])).admits(signed[1]):
            return None
        return signed[0]

    def _signed(self, token: str, secret: str) -> tuple[str, float] | None:
        """`_signed`, remembering each token found valid under `secret` (the same string has the
        same signature) until it expires."""
        key = (token, secret)
        known = self._tokens.get(key)
        if known is None:
            known = _signed(token, secret)
            if known is None:
                return None
            if len(self._tokens) >= TOKENS_KEPT:
                self._tokens.clear()
            self._tokens[key] = known
        account, issued, expires = known
        if time.time() >= expires:
            self._tokens.pop(key, None)
            return None
        return account, issued

    async def set(
        self, account: str, disabled: bool | None = None, end_sessions: bool = False
    ) -> Standing:
        """Disable or enable `account`, and/or end its sessions (every token issued before this
        second stops counting). It counts in this process at once, in others after their next
        read."""
        now = datetime.now(UTC)
        current = await self._read(account)
        new = Standing(
            current.disabled if disabled is None else disabled,
            float(int(time.time())) if end_sessions else current.sessions_after,
        )
        values = {"disabled": new.disabled, "sessions_after": new.sessions_after, "updated_at": now}
        insert = (
            postgresql.insert(standing_table)
            if self.engine.dialect.name == "postgresql"
            else sqlite.insert(standing_table)
        )
        statement = insert.values(account=account, **values).on_conflict_do_update(
            index_elements=[standing_table.c.account], set_=values
        )
        async with self.engine.begin() as conn:
            await conn.execute(statement)
        self._known[account] = new
        self._changed_at = time.monotonic()
        return new

    async def apply(self, verb: str, account: str) -> Standing:
        """The operator's `disable`, `enable` or `logout` (CLI and chat alike): disabling and
        signing out end the account's sessions; enabling leaves them as they are."""
        disabled = {"disable": True, "enable": False}.get(verb)
        return await self.set(account, disabled=disabled, end_sessions=verb != "enable")

    async def _read(self, account: str) -> Standing:
        """`account`'s standing as stored now."""
        t = standing_table
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.c.disabled, t.c.sessions_after).where(t.c.account == account)
                )
            ).first()
        return Standing(bool(row[0]), float(row[1])) if row else Standing()


def _signed(token: str, secret: str) -> tuple[str, float, float] | None:
    """(account, issued at, expires at) of a valid session token; None for anything else."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    account, issued, expires = claims.get("identifier"), claims.get("iat"), claims.get("exp")
    if not isinstance(account, str) or not isinstance(issued, int | float):
        return None
    if expires is not None and not isinstance(expires, int | float):
        return None
    return account, float(issued), float("inf") if expires is None else float(expires)


class SessionCheck:
    """ASGI middleware: a request or socket.io connection whose session token no longer counts is
    refused (401, its cookie cleared; a websocket is closed before it opens)."""

    def __init__(
        self,
        app: ASGIApp,
        standings: Standings,
        secret: str,
        token_of: Callable[[dict[str, str]], str | None],
        cookie_name: str,
    ) -> None:
        self.app = app
        self.standings = standings
        self.secret = secret
        self.token_of = token_of
        self.cookie_name = cookie_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            token = self._token(scope)
            if token and not await self.standings.admits(token, self.secret):
                await self._refuse(scope, send)
                return
        await self.app(scope, receive, send)

    def _token(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            return bearer[7:].strip() or None
        cookies: dict[str, str] = {}
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name:
                cookies[name] = value
        return self.token_of(cookies)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401})
            return
        cleared = f"{self.cookie_name}=; Max-Age=0; Path=/; HttpOnly".encode()
        await send_json(
            send, 401, "This session has ended: sign in again.", [(b"set-cookie", cleared)]
        )


Handler = Callable[..., Awaitable[Any]]


def guard_events(
    handlers: dict[str, Handler],
    still_counts: Callable[[str], Awaitable[bool]],
    end: Callable[[str], Awaitable[None]],
) -> None:
    """Wrap every socket.io event handler of an open session (not `connect`, which the middleware
    guards): before the event runs, the session's token must still count, else the session is
    ended and the event dropped. (A session's events pass one at a time, check and all:
    ui/turnstile.py.)"""
    for event, handler in list(handlers.items()):
        if event in ("connect", "disconnect"):
            continue

        async def guarded(sid: str, *args: Any, _handler: Handler = handler) -> Any:
            if not await still_counts(sid):
                await end(sid)
                return None
            return await _handler(sid, *args)

        handlers[event] = guarded

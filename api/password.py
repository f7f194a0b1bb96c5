"""Changing one's password from the browser (`/password` in the chat links here).

    GET  /auth/password   a form: the current password, the new one twice
    POST /auth/password   checks the current password (throttled like sign-in), sets the new one,
                          ends every other session of the account, and keeps this one

It is a page of its own, not a chat command, so that no password is ever typed into a chat and
stored in its history. A cross-site form cannot post here as the person: the session cookie is
SameSite=Lax, and the current password is asked for anyway.
"""

from __future__ import annotations

import html
import logging

from chainlit.auth import create_jwt, decode_jwt
from chainlit.auth.cookie import get_token_from_cookies, set_auth_cookie
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from auth import passwords
from auth.sessions import Standings
from auth.throttle import Throttle

MIN_LENGTH = 8
log = logging.getLogger("auth")


def router(engine: AsyncEngine, standings: Standings, throttle: Throttle, secret: str) -> APIRouter:
    routes = APIRouter()

    async def signed_in(request: Request) -> tuple[str, str] | None:
        """This browser's session token and its account, while it counts."""
        token = get_token_from_cookies(dict(request.cookies))
        account = await standings.account_of(token, secret) if token else None
        return (token, account) if token and account else None

    @routes.get("/auth/password", include_in_schema=False)
    async def form(request: Request) -> Response:
        session = await signed_in(request)
        if session is None:
            return RedirectResponse("/login", status_code=302)
        account = session[1]
        if await passwords.role_of(engine, account) is None:
            return page("You sign in through a provider: there is no password to change.", 400)
        return page("", 200, account)

    @routes.post("/auth/password", include_in_schema=False)
    async def change(request: Request) -> Response:
        session = await signed_in(request)
        if session is None:
            return page("Your session has ended: sign in again, then change your password.", 401)
        token, account = session
        if await passwords.role_of(engine, account) is None:
            return page("You sign in through a provider: there is no password to change.", 400)
        address = request.client.host if request.client else "unknown"
        if (wait := await throttle.admit(address, account)) is not None:
            return page(f"Too many attempts. Try again in {int(wait + 0.999)} s.", 429, account)
        fields = await request.form()
        current, new, again = (str(fields.get(n, "")) for n in ("current", "new", "again"))
        if len(new) < MIN_LENGTH:
            return page(f"Use a new password of at least {MIN_LENGTH} characters.", 400, account)
        if new != again:
            return page("The two new passwords differ. Nothing was changed.", 400, account)
        if await passwords.check(engine, account, current) is None:
            return page("The current password is wrong. Nothing was changed.", 400, account)
        await passwords.set_password(engine, account, new)
        await standings.set(account, end_sessions=True)
        log.info("password changed from the browser for %s; its other sessions ended", account)
        # This browser stays signed in: a token issued now, after the others stopped counting.
        response = page("Your password is changed, and your other sessions have ended.", 200)
        set_auth_cookie(request, response, create_jwt(decode_jwt(token)))
        return response

    return routes


def page(message: str, status: int, account: str | None = None) -> HTMLResponse:
    """The form (when `account` is given) under `message`."""
    said = f"<p id='message'>{html.escape(message)}</p>" if message else ""
    form = (
        f"<p>Signed in as {html.escape(account)}.</p>"
        "<form method='post' action='/auth/password'>"
        "<label>Current password <input type='password' name='current' required "
        "autocomplete='current-password'></label><br>"
        f"<label>New password <input type='password' name='new' required minlength='{MIN_LENGTH}' "
        "autocomplete='new-password'></label><br>"
        "<label>New password again <input type='password' name='again' required "
        "autocomplete='new-password'></label><br>"
        "<button type='submit'>Change password</button></form>"
        if account
        else ""
    )
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Password</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'></head>"
        "<body style='font-family: system-ui, sans-serif; max-width: 36rem; margin: 4rem auto;'>"
        f"<h1>Your password</h1>{said}{form}<p><a href='/'>Back to the chat</a></p></body></html>"
    )
    return HTMLResponse(body, status_code=status)

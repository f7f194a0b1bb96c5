"""Signing in through GitHub and OpenID Connect providers, and linking one more to an account.

These routes stand in front of Chainlit's own (`/auth/oauth/...`), whose flows check neither PKCE
nor id_tokens: every provider name goes through here, and an unknown one is refused. Chainlit's
login page learns the buttons to show from `/auth/config`, answered here with our providers.

    GET /auth/oauth/{name}            start signing in (or up) with provider `name`
    GET /auth/link/{name}             a signed-in person starts linking provider `name`
    GET /auth/oauth/{name}/callback   where the provider sends the browser back

A refusal is a plain page saying why, with the way back to the login page; it creates, links
and grants nothing.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import chainlit as cl
from chainlit.auth import create_jwt, get_configuration
from chainlit.auth.cookie import get_token_from_cookies, set_auth_cookie
from chainlit.data import get_data_layer
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from auth import flows, identities, signup
from auth.errors import NoSuchProvider, NotSignedIn, SignInRefused
from auth.providers import Provider
from auth.sessions import Standings

STATE_COOKIE = "signin_state"
log = logging.getLogger("auth")


@dataclass(frozen=True)
class SignIn:
    """What the routes need: the providers, the policy, and how to judge a token and an admin."""

    engine: AsyncEngine
    providers: dict[str, Provider]
    policy: signup.Policy
    standings: Standings
    public_url: str | None  # CHAINLIT_URL: every redirect URL is built on it
    account_of_token: Callable[[str], Awaitable[str | None]]  # a session token's account, if valid
    is_admin: Callable[[str], Awaitable[bool]]  # by our records: a password admin, ADMIN_EMAILS

    def redirect_uri(self, request: Request, name: str) -> str:
        base = (self.public_url or str(request.base_url)).rstrip("/")
        return f"{base}/auth/oauth/{name}/callback"

    @property
    def secure(self) -> bool:
        return bool(self.public_url and self.public_url.startswith("https://"))


def router(sign_in: SignIn) -> APIRouter:
    routes = APIRouter()

    @routes.get("/auth/config", include_in_schema=False)
    async def auth_config() -> JSONResponse:
        answer = get_configuration()
        answer["oauthProviders"] = list(sign_in.providers)
        return JSONResponse(answer)

    @routes.get("/auth/oauth/{name}", include_in_schema=False)
    async def start(name: str, request: Request) -> Response:
        return await _begin(sign_in, request, name, link_account=None)

    @routes.get("/auth/link/{name}", include_in_schema=False)
    async def link(name: str, request: Request) -> Response:
        token = get_token_from_cookies(dict(request.cookies))
        account = await sign_in.account_of_token(token) if token else None
        if account is None:
            raise NotSignedIn("Sign in first, then link another way of signing in.")
        return await _begin(sign_in, request, name, link_account=account)

    @routes.get("/auth/oauth/{name}/callback", include_in_schema=False)
    async def callback(name: str, request: Request) -> Response:
        # Refused (api/errors.py), the state cookie stays: a forged callback must not end the
        # real sign-in under way.
        return await _finish(sign_in, request, name)

    return routes


async def _begin(
    sign_in: SignIn, request: Request, name: str, link_account: str | None
) -> Response:
    provider = _provider(sign_in, name)
    flow, url = await flows.begin(
        sign_in.engine, provider, sign_in.redirect_uri(request, name), link_account,
        sign_in.policy.github_org if sign_in.policy.asks_github_org else None,
    )  # fmt: skip
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        STATE_COOKIE, flow.state, max_age=int(flows.FLOW_TTL_S), path="/auth", httponly=True,
        secure=sign_in.secure, samesite="lax",
    )  # fmt: skip
    return response


async def _finish(sign_in: SignIn, request: Request, name: str) -> Response:
    provider = _provider(sign_in, name)
    query = request.query_params
    if error := query.get("error"):
        said = query.get("error_description") or error
        raise SignInRefused(f"{provider.label} did not sign you in: {said}.")
    state, code = query.get("state", ""), query.get("code", "")
    cookie = request.cookies.get(STATE_COOKIE, "")
    if not state or not code:
        raise SignInRefused("The provider's answer is incomplete. Please sign in again.")
    if not cookie or not hmac.compare_digest(cookie.encode(), state.encode()):
        raise SignInRefused(
            "This sign-in was not started in this browser, or it has expired. Please sign in again."
        )
    flow = await flows.take(sign_in.engine, state)
    if flow.provider != name:
        raise SignInRefused("This sign-in was started with another provider. Please sign in again.")
    org = sign_in.policy.github_org if sign_in.policy.asks_github_org else None
    person, member = await flows.identity(
        provider, flow, code, sign_in.redirect_uri(request, name), org
    )
    account = await _account_for(sign_in, person, flow.link_account, member)
    if (await sign_in.standings.of(account)).disabled:
        raise SignInRefused("This account is disabled. Ask the administrator.")
    user = cl.User(
        identifier=account,
        display_name=person.name,
        metadata={"role": "admin" if await sign_in.is_admin(account) else "user", "via": name},
    )
    if data_layer := get_data_layer():
        await data_layer.create_user(user)
    response = RedirectResponse(_root(request) + "/login/callback?success=True", status_code=302)
    set_auth_cookie(request, response, create_jwt(user))
    response.delete_cookie(STATE_COOKIE, path="/auth")
    log.info("signed in through %s: %s", name, account)
    return response


async def _account_for(
    sign_in: SignIn, person: identities.Identity, link_account: str | None, member: bool
) -> str:
    """The account this identity signs in to: the one it has, the one it is being linked to, or
    a new one if the sign-up policy lets it make one."""
    found = await identities.known(sign_in.engine, person)
    if link_account is not None:
        if found is not None and found != link_account:
            raise SignInRefused(
                "That sign-in already belongs to another account here; it was not linked."
            )
        if found is None:
            found = await identities.attach(sign_in.engine, person, link_account)
            if found != link_account:
                raise SignInRefused("That sign-in was just taken by another account.")
            log.info("linked %s#%s to %s", person.provider, person.subject, link_account)
        return found
    if found is not None:
        return found
    if why := await signup.refusal(sign_in.engine, sign_in.policy, person, member):
        raise SignInRefused(why)
    return await identities.attach(sign_in.engine, person)


def _provider(sign_in: SignIn, name: str) -> Provider:
    if (provider := sign_in.providers.get(name)) is None:
        raise NoSuchProvider(f"There is no sign-in provider {name!r} here.")
    return provider


def _root(request: Request) -> str:
    root = str(request.scope.get("root_path") or "")
    return "" if root == "/" else root.rstrip("/")

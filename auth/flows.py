"""One sign-in through a provider, from the redirect to the callback (OAuth 2 authorization code
with PKCE; OpenID Connect's id_token checked as well).

`begin` mints a state, a nonce and a PKCE verifier, keeps them in the database (any replica may
take the callback) and gives the provider's authorization URL. The browser also carries the state
in a cookie, so a callback is accepted only in the browser that started it. `take` uses the state
up: a callback replayed, forged or older than `FLOW_TTL_S` finds nothing. `identity` trades the
code (with the verifier) for tokens and says who signed in.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from sqlalchemy import Column, Float, MetaData, Table, Text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.errors import IdentityRefused, SignInRefused
from auth.identities import Identity, identity_of
from auth.providers import GitHub, Oidc, Provider

FLOW_TTL_S = 600.0
TIMEOUT_S = 10.0

metadata = MetaData()
flows = Table(
    "sign_in_flows",
    metadata,
    Column("state", Text, primary_key=True),
    Column("provider", Text, nullable=False),
    Column("nonce", Text, nullable=False),
    Column("verifier", Text, nullable=False),
    Column("link_account", Text),  # set when a signed-in person links another provider
    Column("created_at", Float, nullable=False),
)


@dataclass(frozen=True)
class Flow:
    state: str
    provider: str
    nonce: str
    verifier: str
    link_account: str | None = None


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)


async def begin(
    engine: AsyncEngine,
    provider: Provider,
    redirect_uri: str,
    link_account: str | None = None,
    github_org: str | None = None,
) -> tuple[Flow, str]:
    """A new flow, and the provider's URL to send the browser to."""
    flow = Flow(
        secrets.token_urlsafe(32), provider.name, secrets.token_urlsafe(24),
        secrets.token_urlsafe(48), link_account,
    )  # fmt: skip
    now = time.time()
    async with engine.begin() as conn:
        await conn.execute(flows.delete().where(flows.c.created_at < now - 2 * FLOW_TTL_S))
        await conn.execute(
            flows.insert().values(
                state=flow.state, provider=flow.provider, nonce=flow.nonce,
                verifier=flow.verifier, link_account=link_account, created_at=now,
            )
        )  # fmt: skip
    async with http_client() as http:
        if isinstance(provider, GitHub):
            endpoint = provider.web_url.rstrip("/") + "/login/oauth/authorize"
            scope = provider.scopes(github_org)
        else:
            endpoint = (await provider.metadata(http))["authorization_endpoint"]
            scope = provider.scopes
    client = _client(provider, redirect_uri, scope)
    extra = {} if isinstance(provider, GitHub) else {"nonce": flow.nonce}
    url, _ = client.create_authorization_url(
        endpoint, state=flow.state, code_verifier=flow.verifier, **extra
    )
    return flow, url


async def take(engine: AsyncEngine, state: str) -> Flow:
    """The flow of `state`, used up; `SignInRefused` if there is none (replayed, forged) or it is
    too old."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                flows.delete()
                .where(flows.c.state == state)
                .returning(
                    flows.c.provider, flows.c.nonce, flows.c.verifier, flows.c.link_account,
                    flows.c.created_at,
                )
            )
        ).first()  # fmt: skip
    if row is None:
        raise SignInRefused(
            "This sign-in link was already used, or was not started here. Please sign in again."
        )
    if time.time() - row[4] > FLOW_TTL_S:
        raise SignInRefused("This sign-in took too long and has expired. Please sign in again.")
    return Flow(state, row[0], row[1], row[2], row[3])


async def identity(
    provider: Provider, flow: Flow, code: str, redirect_uri: str, github_org: str | None = None
) -> tuple[Identity, bool]:
    """Who signed in, from the code the provider sent back; and, when `github_org` is asked
    about, whether they are an active member of it."""
    async with http_client() as http:
        try:
            if isinstance(provider, GitHub):
                return await _github(http, provider, flow, code, redirect_uri, github_org)
            return await _oidc(http, provider, flow, code, redirect_uri), False
        except OAuthError as exc:
            raise SignInRefused(
                f"{provider.label} did not accept the sign-in ({exc.error}). Please sign in again."
            ) from exc
        except httpx.HTTPError as exc:
            raise SignInRefused(
                f"{provider.label} could not be reached ({exc}); try again later."
            ) from exc
        except (ValueError, KeyError, AttributeError) as exc:  # an answer not in the shape promised
            raise SignInRefused(
                f"{provider.label} sent an answer that could not be read; try again later."
            ) from exc
        except IdentityRefused as exc:
            raise SignInRefused(str(exc)) from exc


def _client(provider: Provider, redirect_uri: str, scope: str) -> AsyncOAuth2Client:
    secret = provider.client_secret
    return AsyncOAuth2Client(
        client_id=provider.client_id,
        client_secret=secret,
        scope=scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method=(
            "client_secret_post" if isinstance(provider, GitHub) else
            "client_secret_basic" if secret else "none"
        ),
        timeout=TIMEOUT_S,
    )  # fmt: skip


async def _tokens(
    provider: Provider, endpoint: str, flow: Flow, code: str, redirect_uri: str, scope: str
) -> dict[str, Any]:
    async with _client(provider, redirect_uri, scope) as client:
        token = await client.fetch_token(
            endpoint, code=code, code_verifier=flow.verifier, headers={"Accept": "application/json"}
        )
    if not isinstance(token, dict) or not token.get("access_token"):
        raise SignInRefused(f"{provider.label} sent no access token. Please sign in again.")
    return dict(token)


async def _oidc(
    http: httpx.AsyncClient, provider: Oidc, flow: Flow, code: str, redirect_uri: str
) -> Identity:
    meta = await provider.metadata(http)
    token = await _tokens(provider, meta["token_endpoint"], flow, code, redirect_uri, "")
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise SignInRefused(f"{provider.label} sent no id_token: it is not signing in with OIDC.")
    claims = await provider.verify_id_token(http, id_token, flow.nonce)
    if "email" not in claims and isinstance(meta.get("userinfo_endpoint"), str):
        # Some providers put the email in the userinfo answer only: taken from it only when it
        # speaks of the same subject.
        answer = await http.get(
            meta["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        info = answer.json() if answer.status_code == 200 else {}
        if isinstance(info, dict) and info.get("sub") == claims["sub"]:
            claims = {**info, **claims, "email": info.get("email"),
                      "email_verified": info.get("email_verified")}  # fmt: skip
    return identity_of(provider.key, claims, prefix=provider.name)


async def _github(
    http: httpx.AsyncClient,
    provider: GitHub,
    flow: Flow,
    code: str,
    redirect_uri: str,
    org: str | None,
) -> tuple[Identity, bool]:
    endpoint = provider.web_url.rstrip("/") + "/login/oauth/access_token"
    token = await _tokens(provider, endpoint, flow, code, redirect_uri, provider.scopes(org))
    headers = {
        "Authorization": f"Bearer {token['access_token']}",
        "Accept": "application/vnd.github+json",
    }
    api = provider.api_url.rstrip("/")
    user = await http.get(f"{api}/user", headers=headers)
    user.raise_for_status()
    emails = await http.get(f"{api}/user/emails", headers=headers)
    raw = dict(user.json())
    raw["emails"] = emails.json() if emails.status_code == 200 else []
    member = False
    if org:
        answer = await http.get(f"{api}/user/memberships/orgs/{org}", headers=headers)
        member = answer.status_code == 200 and answer.json().get("state") == "active"
    return identity_of("github", raw, prefix="github"), member

"""The sign-in providers an operator configured: GitHub (OAuth 2), and OpenID Connect providers
found by their issuer URL (Google is one, at https://accounts.google.com).

For an OpenID Connect provider everything else comes from its discovery document
(`<issuer>/.well-known/openid-configuration`), whose `issuer` must be the configured one exactly,
and the keys that sign its id_tokens from its `jwks_uri`. Both are fetched when first needed and
kept; keys are fetched again when a token names a key id not seen yet (the provider rotated them).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from auth.errors import ProviderFailed, SignInRefused

if TYPE_CHECKING:
    from settings import Settings

GOOGLE_ISSUER = "https://accounts.google.com"
# Asymmetric signatures only: a token signed with the client secret (HS256) or not at all proves
# nothing about who made it.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                       "ES512", "EdDSA")  # fmt: skip
LEEWAY_S = 60  # clock difference tolerated on exp, iat and nbf
REFETCH_KEYS_AFTER_S = 60.0  # an unknown key id fetches the keys again, at most this often
NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")


@dataclass(frozen=True)
class GitHub:
    """GitHub's OAuth app flow; who signs in comes from its user and email APIs."""

    client_id: str
    client_secret: str
    web_url: str = "https://github.com"
    api_url: str = "https://api.github.com"
    name: str = "github"
    label: str = "GitHub"
    key: str = "github"  # identities are keyed (github, numeric user id)

    def scopes(self, org: str | None) -> str:
        return "read:user user:email" + (" read:org" if org else "")


@dataclass
class Oidc:
    """An OpenID Connect provider, by its issuer URL."""

    name: str  # in routes and on the button: `google`, `acme`
    label: str
    issuer: str
    client_id: str
    client_secret: str | None
    scopes: str = "openid email profile"
    _metadata: dict[str, Any] | None = field(default=None, repr=False)
    _keys: KeySet | None = field(default=None, repr=False)
    _keys_at: float = field(default=0.0, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def key(self) -> str:
        """Identities are keyed (issuer, sub): the subject is unique only within its issuer."""
        return self.issuer

    async def metadata(self, http: httpx.AsyncClient) -> dict[str, Any]:
        """The provider's discovery document, checked to be this issuer's."""
        if self._metadata is None:
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = await _get_json(http, url, f"{self.label}'s discovery document")
            if found.get("issuer") != self.issuer:
                raise ProviderFailed(
                    f"{self.label}'s discovery document names the issuer "
                    f"{found.get('issuer')!r}, not {self.issuer!r}: its sign-in is not trusted."
                )
            for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(found.get(needed), str):
                    raise ProviderFailed(f"{self.label}'s discovery document has no {needed}.")
            self._metadata = found
        return self._metadata

    async def verify_id_token(
        self, http: httpx.AsyncClient, id_token: str, nonce: str, now: float | None = None
    ) -> dict[str, Any]:
        """The id_token's claims, once its signature (by one of the provider's keys), issuer,
        audience, authorized party, times and nonce all hold; otherwise `SignInRefused`."""
        keys = await self._signing_keys(http, id_token)
        try:
            token = jwt.decode(id_token, keys, algorithms=list(ID_TOKEN_ALGORITHMS))
        except (JoseError, ValueError) as exc:
            raise SignInRefused(f"{self.label}'s id_token is not validly signed ({exc}).") from exc
        claims = dict(token.claims)
        registry = jwt.JWTClaimsRegistry(
            now=int(now if now is not None else time.time()),
            leeway=LEEWAY_S,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise SignInRefused(f"{self.label}'s id_token does not hold: {exc}.") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise SignInRefused(f"{self.label}'s id_token was issued to another party.")
        return claims

    async def _signing_keys(self, http: httpx.AsyncClient, id_token: str) -> KeySet:
        kid = _header_kid(id_token)
        async with self._lock:
            stale = time.monotonic() - self._keys_at > REFETCH_KEYS_AFTER_S
            if self._keys is None or (kid is not None and not _has_kid(self._keys, kid) and stale):
                uri = (await self.metadata(http))["jwks_uri"]
                found = await _get_json(http, uri, f"{self.label}'s signing keys")
                try:
                    self._keys = KeySet.import_key_set(found)  # type: ignore[arg-type]
                except (JoseError, ValueError, TypeError, KeyError) as exc:
                    raise SignInRefused(f"{self.label}'s signing keys are unreadable.") from exc
                self._keys_at = time.monotonic()
            return self._keys


Provider = GitHub | Oidc


def _header_kid(token: str) -> str | None:
    try:
        header = jws.extract_compact(token.encode()).headers()  # only to pick the key
    except (JoseError, ValueError):
        return None
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in keys.keys)


async def _get_json(http: httpx.AsyncClient, url: str, what: str) -> dict[str, Any]:
    try:
        answer = await http.get(url, headers={"Accept": "application/json"})
        answer.raise_for_status()
        found = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ProviderFailed(f"{what} could not be read ({exc}); try again later.") from exc
    if not isinstance(found, dict):
        raise ProviderFailed(f"{what} is not a JSON object.")
    return found


def parse_oidc_list(text: str) -> list[tuple[str, str]]:
    """`OIDC_PROVIDERS`: `name=issuer` pairs, comma-separated (`acme=https://login.acme.com`)."""
    pairs: list[tuple[str, str]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, issuer = (s.strip() for s in item.partition("="))
        if not sep or not NAME.fullmatch(name) or not issuer.startswith(("https://", "http://")):
            raise ValueError(
                f"OIDC_PROVIDERS entry {item!r} is not name=issuer "
                "(a lower-case name, an http(s) issuer URL)"
            )
        if name in ("github", "google") or name in (n for n, _ in pairs):
            raise ValueError(f"OIDC_PROVIDERS names {name!r} twice or takes a built-in name")
        pairs.append((name, issuer))
    return pairs


def configured(settings: Settings) -> dict[str, Provider]:
    """The providers configured in `settings`, by name, in the order their buttons show."""
    found: dict[str, Provider] = {}
    if settings.oauth_github_client_id and settings.oauth_github_client_secret:
        found["github"] = GitHub(
            settings.oauth_github_client_id,
            settings.oauth_github_client_secret.get_secret_value(),
            settings.oauth_github_web_url,
            settings.oauth_github_api_url,
        )
    if settings.oauth_google_client_id:
        secret = settings.oauth_google_client_secret
        found["google"] = Oidc(
            "google", "Google", GOOGLE_ISSUER, settings.oauth_google_client_id,
            secret.get_secret_value() if secret else None,
        )  # fmt: skip
    for name, issuer in parse_oidc_list(settings.oidc_providers):
        client_id = settings.provider_secret(f"OIDC_{name.upper().replace('-', '_')}_CLIENT_ID")
        if not client_id:
            raise ValueError(
                f"OIDC provider {name!r} has no client id: set "
                f"OIDC_{name.upper().replace('-', '_')}_CLIENT_ID"
            )
        secret_name = f"OIDC_{name.upper().replace('-', '_')}_CLIENT_SECRET"
        label = settings.provider_secret(f"OIDC_{name.upper().replace('-', '_')}_LABEL")
        found[name] = Oidc(
            name, label or name.capitalize(), issuer, client_id,
            settings.provider_secret(secret_name),
        )  # fmt: skip
    return found

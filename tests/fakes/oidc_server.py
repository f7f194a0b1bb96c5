"""An OpenID Connect provider on loopback that can be told to misbehave: its id_tokens may be signed
by a key it does not publish, for another audience, from another issuer, expired, or with another
nonce. It checks PKCE (S256) as a real one does, and records what it was asked."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.fakes.loopback import JsonHandler, Loopback

MODES = ("good", "wrong-key", "wrong-audience", "wrong-issuer", "expired", "wrong-nonce", "hs256")


class FakeOidc:
    def __init__(self, client_id: str, subject: str = "fake-1") -> None:
        self.client_id = client_id
        self.subject = subject
        self.mode = "good"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "published"})
        self.stranger = RSAKey.generate_key(2048, parameters={"kid": "published"})
        self.codes: dict[str, dict[str, str]] = {}  # code -> what /authorize was asked
        self.asked: list[dict[str, str]] = []
        self.loopback = Loopback(self._handler())
        self.issuer = self.loopback.url

    def start(self) -> FakeOidc:
        self.loopback.start()
        return self

    def stop(self) -> None:
        self.loopback.stop()

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": self.subject, "aud": self.client_id, "iat": now,
            "exp": now + 300, "nonce": nonce, "email": f"{self.subject}@example.com",
            "email_verified": True,
        }  # fmt: skip
        key: Any = self.key
        header = {"alg": "RS256", "kid": "published"}
        if self.mode == "wrong-key":
            key = self.stranger
        elif self.mode == "wrong-audience":
            claims["aud"] = "someone-else"
        elif self.mode == "wrong-issuer":
            claims["iss"] = "https://evil.example"
        elif self.mode == "expired":
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        elif self.mode == "wrong-nonce":
            claims["nonce"] = "not-the-one"
        elif self.mode == "hs256":
            from joserfc.jwk import OctKey

            key, header = OctKey.import_key(b"client-secret-known-to-all-000000"), {"alg": "HS256"}
            return jwt.encode(header, claims, key, algorithms=["HS256"])
        return jwt.encode(header, claims, key)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/.well-known/openid-configuration":
                    self.answer({
                        "issuer": fake.issuer,
                        "authorization_endpoint": f"{fake.issuer}/authorize",
                        "token_endpoint": f"{fake.issuer}/token",
                        "jwks_uri": f"{fake.issuer}/jwks",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    })  # fmt: skip
                elif url.path == "/jwks":
                    self.answer(KeySet([fake.key]).as_dict(private=False))
                elif url.path == "/authorize":
                    fake.asked.append(query)
                    code = secrets.token_urlsafe(16)
                    fake.codes[code] = query
                    target = (
                        query["redirect_uri"]
                        + "?"
                        + urllib.parse.urlencode({"code": code, "state": query.get("state", "")})
                    )
                    self.redirect(target)
                else:
                    self.answer({"error": "not_found"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                asked = fake.codes.pop(form.get("code", ""), None)
                if asked is None:
                    self.answer({"error": "invalid_grant"}, 400)
                    return
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(
                    hashlib.sha256(verifier.encode()).digest()
                ).rstrip(b"=")
                if asked.get("code_challenge_method") != "S256" or challenge.decode() != asked.get(
                    "code_challenge"
                ):
                    self.answer({"error": "invalid_grant", "error_description": "PKCE"}, 400)
                    return
                self.answer({
                    "access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                    "id_token": fake.id_token(asked.get("nonce", "")),
                })  # fmt: skip

        return Handler

"""GitHub's OAuth app flow and the user APIs it is followed by, on loopback: authorize (which
signs in whoever the test set as `person`), the token exchange (checking the client secret and
PKCE, a code good once), `/user`, `/user/emails` and `/user/memberships/orgs/<org>`."""

from __future__ import annotations

import base64
import hashlib
import secrets
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.loopback import JsonHandler, Loopback


@dataclass
class GitHubUser:
    id: int
    login: str
    emails: list[dict[str, Any]] = field(default_factory=list)
    orgs: tuple[str, ...] = ()


class FakeGitHub:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.person = GitHubUser(1, "octocat")
        self.codes: dict[str, tuple[dict[str, str], GitHubUser]] = {}
        self.tokens: dict[str, GitHubUser] = {}
        self.loopback = Loopback(self._handler())
        self.url = self.loopback.url

    def start(self) -> FakeGitHub:
        self.loopback.start()
        return self

    def stop(self) -> None:
        self.loopback.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(JsonHandler):
            def _user(self) -> GitHubUser | None:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                return fake.tokens.get(token)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/login/oauth/authorize":
                    query = dict(urllib.parse.parse_qsl(url.query))
                    code = secrets.token_urlsafe(12)
                    fake.codes[code] = (query, fake.person)
                    back = urllib.parse.urlencode({"code": code, "state": query.get("state", "")})
                    self.redirect(f"{query['redirect_uri']}?{back}")
                    return
                user = self._user()
                if user is None:
                    self.answer({"message": "Bad credentials"}, 401)
                elif url.path == "/user":
                    self.answer({"id": user.id, "login": user.login, "name": user.login.title()})
                elif url.path == "/user/emails":
                    self.answer(user.emails)
                elif url.path.startswith("/user/memberships/orgs/"):
                    org = url.path.rsplit("/", 1)[1]
                    if org in user.orgs:
                        self.answer({"state": "active", "organization": {"login": org}})
                    else:
                        self.answer({"message": "Not Found"}, 404)
                else:
                    self.answer({"message": "Not Found"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                found = fake.codes.pop(form.get("code", ""), None)
                if (
                    found is None
                    or form.get("client_id") != fake.client_id
                    or form.get("client_secret") != fake.client_secret
                ):
                    self.answer({"error": "bad_verification_code"})  # GitHub answers 200
                    return
                asked, user = found
                verifier = form.get("code_verifier", "").encode()
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
                if challenge.decode() != asked.get("code_challenge"):
                    self.answer({"error": "bad_verification_code"})
                    return
                token = secrets.token_urlsafe(16)
                fake.tokens[token] = user
                self.answer({"access_token": token, "token_type": "bearer", "scope": "read:user"})

        return Handler

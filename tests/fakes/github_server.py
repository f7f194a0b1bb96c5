"""GitHub's OAuth app flow and the user APIs it is followed by, on loopback: authorize (which
signs in whoever the test set as `person`), the token exchange (checking the client secret and
PKCE, a code good once), `/user`, `/user/emails` and `/user/memberships/orgs/<org>`."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeGitHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, body: Any, status: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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
                    self.send_response(302)
                    self.send_header("Location", f"{query['redirect_uri']}?{back}")
                    self.end_headers()
                    return
                user = self._user()
                if user is None:
                    self._json({"message": "Bad credentials"}, 401)
                elif url.path == "/user":
                    self._json({"id": user.id, "login": user.login, "name": user.login.title()})
                elif url.path == "/user/emails":
                    self._json(user.emails)
                elif url.path.startswith("/user/memberships/orgs/"):
                    org = url.path.rsplit("/", 1)[1]
                    if org in user.orgs:
                        self._json({"state": "active", "organization": {"login": org}})
                    else:
                        self._json({"message": "Not Found"}, 404)
                else:
                    self._json({"message": "Not Found"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                found = fake.codes.pop(form.get("code", ""), None)
                if (
                    found is None
                    or form.get("client_id") != fake.client_id
                    or form.get("client_secret") != fake.client_secret
                ):
                    self._json({"error": "bad_verification_code"})  # GitHub answers 200
                    return
                asked, user = found
                verifier = form.get("code_verifier", "").encode()
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
                if challenge.decode() != asked.get("code_challenge"):
                    self._json({"error": "bad_verification_code"})
                    return
                token = secrets.token_urlsafe(16)
                fake.tokens[token] = user
                self._json({"access_token": token, "token_type": "bearer", "scope": "read:user"})

        return Handler

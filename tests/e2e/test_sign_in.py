"""Signing in through OpenID Connect, end to end: the real app process, two real providers (npm
`oidc-provider`, which requires PKCE of every client) and one that misbehaves on purpose
(tests/fakes/oidc_server.py). A test plays the browser: it follows redirects and fills in the
provider's sign-in and consent pages.

Sign up once (one welcome bonus), sign in again, link a second provider, sign out; and every bad
input (state forged or replayed, a code used twice, an id_token that does not hold, an unverified
email, a disabled account) is refused with a page that says why, and creates nothing.
"""

from __future__ import annotations

import asyncio
import html
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from settings import ROOT
from tests.e2e.client import ChatSession, messages
from tests.e2e.process import app_environment, free_port, running_app
from tests.fakes.github_server import FakeGitHub, GitHubUser
from tests.fakes.oidc_server import FakeOidc

pytestmark = pytest.mark.e2e
OIDC_DIR = ROOT / "tests" / "oidc"
CLIENT_ID, CLIENT_SECRET = "creditchat", "a-client-secret-for-tests"


def ensure_oidc_provider() -> None:
    """Install the npm `oidc-provider` pinned in tests/oidc (from the npm registry, once)."""
    if (OIDC_DIR / "node_modules" / "oidc-provider").exists():
        return
    npm = shutil.which("npm")
    assert npm, "npm is needed for the OpenID Connect tests (Node.js 20 or later)"
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=OIDC_DIR, check=True
    )


@dataclass
class Site:
    base_url: str
    data_dir: Path
    issuers: dict[str, str]  # provider name -> issuer URL
    fake: FakeOidc

    github: FakeGitHub

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "auth", *args], cwd=ROOT, capture_output=True, text=True,
            env=app_environment(self.data_dir), input=stdin,
        )  # fmt: skip


def start_provider(port: int, redirect_uri: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["node", "provider.mjs", str(port), f"http://127.0.0.1:{port}", CLIENT_ID, CLIENT_SECRET,
         redirect_uri],
        cwd=OIDC_DIR, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("ready"), f"the OIDC provider did not start: {line!r}"
    return proc


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    ensure_oidc_provider()
    app_port = free_port()
    base = f"http://127.0.0.1:{app_port}"
    ports = {"acme": free_port(), "corp": free_port()}
    providers = {
        name: start_provider(port, f"{base}/auth/oauth/{name}/callback")
        for name, port in ports.items()
    }
    fake = FakeOidc("fake-client").start()
    github = FakeGitHub("gh-client", "gh-secret").start()
    issuers = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    issuers["fake"] = fake.issuer
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-signin-"))
    try:
        with running_app(
            data_dir,
            port=app_port,
            CHAINLIT_URL=base,
            ADMIN_EMAIL="admin@example.com",
            ADMIN_PASSWORD="admin-password-for-tests",
            OIDC_PROVIDERS=",".join(f"{n}={i}" for n, i in issuers.items()),
            OIDC_ACME_CLIENT_ID=CLIENT_ID, OIDC_ACME_CLIENT_SECRET=CLIENT_SECRET,
            OIDC_ACME_LABEL="Acme",
            OIDC_CORP_CLIENT_ID=CLIENT_ID, OIDC_CORP_CLIENT_SECRET=CLIENT_SECRET,
            OIDC_FAKE_CLIENT_ID="fake-client", OIDC_FAKE_CLIENT_SECRET="fake-secret",
            OAUTH_GITHUB_CLIENT_ID="gh-client", OAUTH_GITHUB_CLIENT_SECRET="gh-secret",
            OAUTH_GITHUB_WEB_URL=github.url, OAUTH_GITHUB_API_URL=github.url,
            SIGNUP="allowlist", SIGNUP_EMAIL_DOMAINS="example.com", SIGNUP_GITHUB_ORG="acme-org",
            LOGIN_ATTEMPTS_PER_ADDRESS="100000/minute",
            LOGIN_ATTEMPTS_PER_ACCOUNT="100000/minute",
        ) as base_url:  # fmt: skip
            yield Site(base_url, data_dir, issuers, fake, github)
    finally:
        fake.stop()
        github.stop()
        for proc in providers.values():
            proc.terminate()
            proc.wait(timeout=10)


FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


async def browse(http: httpx.AsyncClient, url: str, login: str) -> httpx.Response:
    """Follow redirects as a browser does, signing in as `login` and consenting on the provider's
    pages, until the app answers the provider's callback (or a page that is neither)."""
    response = await http.get(url)
    for _ in range(20):
        if str(response.url.path).endswith("/callback"):
            return response  # the app's answer to the provider's callback
        if response.status_code in (302, 303) and "location" in response.headers:
            response = await http.get(
                urllib.parse.urljoin(str(response.url), response.headers["location"])
            )
            continue
        form = FORM.search(response.text) if "interaction" in str(response.url) else None
        if form is None:
            return response
        fields = dict(HIDDEN.findall(form.group(2)))
        if fields.get("prompt") == "login":
            fields.update(login=login, password="any-password")
        action = urllib.parse.urljoin(str(response.url), html.unescape(form.group(1)))
        response = await http.post(action, data=fields)
    raise AssertionError("too many redirects")


async def sign_in(site: Site, provider: str, login: str, http: httpx.AsyncClient | None = None,
                  start: str = "oauth") -> tuple[httpx.Response, httpx.AsyncClient]:  # fmt: skip
    """Sign in (or, with start="link", link) through `provider` as `login`; the app's last answer
    and the browser (its cookies)."""
    http = http or httpx.AsyncClient(follow_redirects=False, timeout=30)
    answer = await browse(http, f"{site.base_url}/auth/{start}/{provider}", login)
    return answer, http


async def whoami(site: Site, http: httpx.AsyncClient) -> str | None:
    answer = await http.get(f"{site.base_url}/user")
    return answer.json()["identifier"] if answer.status_code == 200 else None


def reason(page: httpx.Response) -> str:
    found = re.search(r"<p id='reason'>(.*?)</p>", page.text, re.S)
    return html.unescape(found.group(1)) if found else page.text[:300]


async def balance_text(site: Site, http: httpx.AsyncClient) -> str:
    """What the chat says first: the welcome (first chat of a new account) or the balance."""
    session = {c.name: c.value for c in http.cookies.jar if c.name.startswith("access_token")}
    chat = ChatSession(site.base_url, httpx.Cookies(session))
    await chat.connect()
    try:
        await chat.wait_until(lambda events: bool(messages(events)), timeout=60)
        return str(messages(chat.events)[0]["output"])
    finally:
        await chat.close()


async def test_sign_up_sign_in_again_link_a_second_provider_and_sign_out(site: Site) -> None:
    config = (await httpx.AsyncClient().get(f"{site.base_url}/auth/config")).json()
    assert config["oauthProviders"] == ["github", "acme", "corp", "fake"]

    first, browser = await sign_in(site, "acme", "ann")
    assert first.status_code == 302 and first.headers["location"].endswith(
        "/login/callback?success=True"
    )
    assert await whoami(site, browser) == "acme:ann"
    assert "1,000" in await balance_text(site, browser)  # the welcome bonus, once

    again, second_browser = await sign_in(site, "acme", "ann")
    assert again.status_code == 302
    assert await whoami(site, second_browser) == "acme:ann"
    assert "welcome" not in (await balance_text(site, second_browser)).lower()

    linked, _ = await sign_in(site, "corp", "ann.at.corp", http=browser, start="link")
    assert linked.status_code == 302, reason(linked)
    _, third_browser = await sign_in(site, "corp", "ann.at.corp")
    assert await whoami(site, third_browser) == "acme:ann"  # one person, one account
    session = {c.name: c.value for c in third_browser.cookies.jar if c.name == "access_token"}
    chat = ChatSession(site.base_url, httpx.Cookies(session))
    await chat.connect()
    events = await chat.send("/signins")
    shown = str([m["output"] for m in messages(events)])
    assert "Acme (ann@example.com)" in shown and "ann.at.corp@example.com" in shown
    listed = site.cli("identities", "acme:ann")
    assert site.issuers["acme"] in listed.stdout and site.issuers["corp"] in listed.stdout

    # Removing a link from the chat: a forged button naming someone else's sign-in changes
    # nothing; ann's own Remove does, and corp's ann is then a person of her own.
    buttons = [d for n, d in events if n == "action" and d["name"] == "unlink_signin"]
    assert len(buttons) == 2
    await sign_in(site, "corp", "zed")
    forged = {**buttons[0], "payload": {"provider": site.issuers["corp"], "subject": "zed"}}
    start = len(chat.events)
    assert await chat.call_action(forged) == 200
    await chat.wait_until(lambda ev: "not one of yours" in str(ev), start)
    assert site.cli("identities", "corp:zed").stdout.strip().endswith("1")
    corp = next(b for b in buttons if b["payload"]["provider"] == site.issuers["corp"])
    start = len(chat.events)
    assert await chat.call_action(corp) == 200
    await chat.wait_until(lambda ev: "Removed" in str(ev), start)
    await chat.close()
    _, fourth_browser = await sign_in(site, "corp", "ann.at.corp")
    assert await whoami(site, fourth_browser) == "corp:ann.at.corp"
    await fourth_browser.aclose()

    # A sign-in that belongs to someone else cannot be linked to ann.
    await sign_in(site, "acme", "bob")
    taken, _ = await sign_in(site, "acme", "bob", http=browser, start="link")
    assert taken.status_code == 400 and "another account" in reason(taken)

    out = await browser.post(f"{site.base_url}/logout")
    assert out.status_code == 200
    assert await whoami(site, browser) is None
    for http in (browser, second_browser, third_browser):
        await http.aclose()


async def test_the_pkce_state_and_nonce_go_with_every_sign_in(site: Site) -> None:
    async with httpx.AsyncClient(follow_redirects=False) as http:
        start = await http.get(f"{site.base_url}/auth/oauth/fake")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(start.headers["location"]).query))
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 40 and len(query["nonce"]) >= 30
    assert query["redirect_uri"] == f"{site.base_url}/auth/oauth/fake/callback"


@pytest.mark.parametrize("mode", ["wrong-key", "wrong-audience", "wrong-issuer", "expired",
                                  "wrong-nonce", "hs256"])  # fmt: skip
async def test_an_id_token_that_does_not_hold_is_refused(site: Site, mode: str) -> None:
    site.fake.mode, site.fake.subject = mode, f"mallory-{mode}"
    try:
        answer, http = await sign_in(site, "fake", "-")
    finally:
        site.fake.mode = "good"
    assert answer.status_code == 400 and "id_token" in reason(answer), reason(answer)
    assert await whoami(site, http) is None
    assert site.cli("identities", f"fake:mallory-{mode}").stdout.strip().endswith("none")
    await http.aclose()
    site.fake.subject = "fake-1"
    good, http = await sign_in(site, "fake", "-")  # the same provider behaving: it works
    assert good.status_code == 302 and await whoami(site, http) == "fake:fake-1"
    await http.aclose()


async def test_forged_and_replayed_callbacks_are_refused(site: Site) -> None:
    async with httpx.AsyncClient(follow_redirects=False) as http:
        start = await http.get(f"{site.base_url}/auth/oauth/fake")
        back = await http.get(start.headers["location"])  # the provider sends the code back
        callback = back.headers["location"]
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
        forged = callback.replace(query["state"], "forged-" + query["state"][7:])
        refused = await http.get(forged)
        assert refused.status_code == 400 and "not started in this browser" in reason(refused)
        done = await http.get(callback)
        assert done.status_code == 302, reason(done)
        http.cookies.set("signin_state", query["state"], path="/auth")
        replayed = await http.get(callback)
        assert replayed.status_code == 400 and "already used" in reason(replayed)

    # The same code under a new state, in a new browser: the provider refuses it (good once).
    async with httpx.AsyncClient(follow_redirects=False) as http:
        again = await http.get(f"{site.base_url}/auth/oauth/fake")
        state = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(again.headers["location"]).query))
        reused = await http.get(
            f"{site.base_url}/auth/oauth/fake/callback?code={query['code']}&state={state['state']}"
        )
        assert reused.status_code == 400 and "did not accept" in reason(reused)
        assert await whoami(site, http) is None

        unknown = await http.get(f"{site.base_url}/auth/oauth/nobody")
        assert unknown.status_code == 404


async def test_no_verified_email_no_account_and_a_disabled_account_stays_out(site: Site) -> None:
    refused, http = await sign_in(site, "acme", "unverified-eve")
    assert refused.status_code == 400 and "verified" in reason(refused)
    assert await whoami(site, http) is None
    assert site.cli("identities", "acme:unverified-eve").stdout.strip().endswith("none")
    await http.aclose()

    _, http = await sign_in(site, "acme", "dan")
    assert await whoami(site, http) == "acme:dan"
    assert site.cli("disable", "acme:dan").returncode == 0
    await asyncio.sleep(2.5)  # standings are cached for two seconds
    assert await whoami(site, http) is None  # the old token stops working
    shut, again = await sign_in(site, "acme", "dan")
    assert shut.status_code == 400 and "disabled" in reason(shut)
    for client in (http, again):
        await client.aclose()


async def role_of_session(site: Site, http: httpx.AsyncClient) -> object:
    return (await http.get(f"{site.base_url}/user")).json()["metadata"].get("role")


async def test_github_sign_ups_by_org_or_listed_email_and_a_look_alike_stays_another_person(
    site: Site,
) -> None:
    """The password administrator `bob` and GitHub's `bob` are two people: the GitHub one is let
    in as a member of the allowed organisation (his only email is unverified), as himself, with
    no admin role. A GitHub user with neither membership nor a listed email is refused."""
    added = site.cli("add", "bob", "--admin", "--password-stdin", stdin="bobs-admin-password\n")
    assert added.returncode == 0, added.stderr
    site.github.person = GitHubUser(
        4242, "bob", [{"email": "bob@example.com", "verified": False, "primary": True}],
        orgs=("acme-org",),
    )  # fmt: skip
    answer, http = await sign_in(site, "github", "-")
    assert answer.status_code == 302, reason(answer)
    assert await whoami(site, http) == "github:4242"
    assert await role_of_session(site, http) == "user"
    async with httpx.AsyncClient() as admin:
        signed = await admin.post(
            f"{site.base_url}/login", data={"username": "bob", "password": "bobs-admin-password"}
        )
        assert signed.status_code == 200
        assert await whoami(site, admin) == "bob"
        assert await role_of_session(site, admin) == "admin"
        # The administrator links a GitHub account of their own: signing in through it is
        # signing in as `bob`, with the role our records give bob.
        site.github.person = GitHubUser(
            5151, "bob-at-work", [{"email": "bob@elsewhere.org", "verified": True, "primary": True}]
        )
        linked, _ = await sign_in(site, "github", "-", http=admin, start="link")
        assert linked.status_code == 302, reason(linked)
    via_github, fresh = await sign_in(site, "github", "-")
    assert via_github.status_code == 302
    assert await whoami(site, fresh) == "bob"
    assert await role_of_session(site, fresh) == "admin"
    await fresh.aclose()
    await http.aclose()

    site.github.person = GitHubUser(
        77, "carol", [{"email": "carol@example.com", "verified": True, "primary": True}]
    )  # a listed domain, verified: in, though not a member
    answer, http = await sign_in(site, "github", "-")
    assert answer.status_code == 302 and await whoami(site, http) == "github:77"
    await http.aclose()

    site.github.person = GitHubUser(
        99, "mallory", [{"email": "mallory@elsewhere.org", "verified": True, "primary": True}]
    )
    answer, http = await sign_in(site, "github", "-")
    assert answer.status_code == 400 and "not on this site's list" in reason(answer)
    assert await whoami(site, http) is None
    assert site.cli("identities", "github:99").stdout.strip().endswith("none")
    site.cli("invite", "mallory@elsewhere.org")
    answer, http = await sign_in(site, "github", "-", http=http)
    assert answer.status_code == 302 and await whoami(site, http) == "github:99"  # invited
    await http.aclose()

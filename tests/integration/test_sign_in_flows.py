"""A sign-in flow is good once, for ten minutes, and only with the provider it was started with;
its authorization URL carries PKCE (S256), a state and a nonce. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import urllib.parse
from collections.abc import Iterator

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from auth import flows
from auth.errors import SignInRefused
from auth.providers import Oidc
from tests.fakes.oidc_server import FakeOidc


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOidc]:
    server = FakeOidc("client").start()
    yield server
    server.stop()


def provider(fake: FakeOidc) -> Oidc:
    return Oidc("acme", "Acme", fake.issuer, "client", "secret")


async def test_a_flow_is_used_once(engine: AsyncEngine, fake: FakeOidc) -> None:
    flow, url = await flows.begin(engine, provider(fake), "https://chat.example/cb")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(flow.verifier.encode()).digest())
    assert query["code_challenge"] == challenge.rstrip(b"=").decode()
    assert (query["code_challenge_method"], query["state"], query["nonce"]) == (
        "S256", flow.state, flow.nonce,
    )  # fmt: skip
    taken = await asyncio.gather(
        *(flows.take(engine, flow.state) for _ in range(5)), return_exceptions=True
    )
    assert sum(isinstance(t, flows.Flow) for t in taken) == 1  # at once, still only one
    assert all(isinstance(t, SignInRefused) for t in taken if not isinstance(t, flows.Flow))
    with pytest.raises(SignInRefused, match="already used"):
        await flows.take(engine, flow.state)


async def test_an_old_flow_has_expired_and_is_gone(engine: AsyncEngine, fake: FakeOidc) -> None:
    flow, _ = await flows.begin(engine, provider(fake), "https://chat.example/cb")
    async with engine.begin() as conn:
        await conn.execute(
            update(flows.flows)
            .where(flows.flows.c.state == flow.state)
            .values(created_at=time.time() - flows.FLOW_TTL_S - 1)
        )
    with pytest.raises(SignInRefused, match="expired"):
        await flows.take(engine, flow.state)
    with pytest.raises(SignInRefused, match="already used"):
        await flows.take(engine, flow.state)


async def test_a_discovery_document_of_another_issuer_is_not_trusted(fake: FakeOidc) -> None:
    lying = Oidc("acme", "Acme", fake.issuer + "/", "client", "secret")  # not the issuer it names
    async with flows.http_client() as http:
        with pytest.raises(SignInRefused, match="names the issuer"):
            await lying.metadata(http)

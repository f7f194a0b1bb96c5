"""Binding wallets by Sign-In with Ethereum (EIP-4361), on the tester chain (SQLite and
PostgreSQL): a message written here, signed by the wallet's key, checked to the letter; every
way a message or signature can be wrong refused with a reason, binding nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.store import Ledger
from payments import siwe, wallets
from payments.wallets import NotBound, Site
from tests.crypto.evm import Evm
from tests.crypto.shop import SITE_URI, Shop, open_shop


@pytest.fixture
async def shop(engine: AsyncEngine, ledger: Ledger) -> AsyncIterator[Shop]:
    yield await open_shop(Evm.tester(), engine, ledger)


async def signed(shop: Shop, account: str, who, site: Site | None = None) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    message = await wallets.challenge(shop.engine, site or shop.site, account, who.address)
    return message.text(), who.sign(message.text())


async def bind(shop: Shop, account: str, text: str, signature: str) -> wallets.Wallet:
    return await wallets.bind(shop.engine, shop.chain, shop.site, account, text, signature)


async def test_a_wallet_is_bound_seen_and_unbound(shop: Shop) -> None:
    ann = await shop.evm.person()
    text, signature = await signed(shop, "ann@example.com", ann)
    message = siwe.parse(text)
    assert text.startswith("chat.example.com wants you to sign in with your Ethereum account:\n")
    assert (message.domain, message.uri, message.chain_id) == (
        "chat.example.com", SITE_URI, shop.config.chain_id,
    )  # fmt: skip
    assert message.address != ann.address and message.address.lower() == ann.address  # EIP-55
    await bind(shop, "ann@example.com", text, signature)
    [wallet] = await wallets.of_account(shop.engine, "ann@example.com")
    assert wallet.address == ann.address
    assert await wallets.owners(shop.engine, {ann.address}) == {ann.address: "ann@example.com"}
    assert not await wallets.unbind(shop.engine, "bob@example.com", ann.address)  # not Bob's
    assert await wallets.unbind(shop.engine, "ann@example.com", ann.address.upper())
    assert await wallets.of_account(shop.engine, "ann@example.com") == []


async def test_a_message_is_used_once(shop: Shop) -> None:
    ann = await shop.evm.person()
    text, signature = await signed(shop, "ann@example.com", ann)
    await bind(shop, "ann@example.com", text, signature)
    await wallets.unbind(shop.engine, "ann@example.com", ann.address)
    with pytest.raises(NotBound, match="already used"):
        await bind(shop, "ann@example.com", text, signature)  # replayed
    assert await wallets.of_account(shop.engine, "ann@example.com") == []


async def test_a_message_issued_to_someone_else_does_not_bind(shop: Shop) -> None:
    ann = await shop.evm.person()
    text, signature = await signed(shop, "ann@example.com", ann)
    with pytest.raises(NotBound, match="not issued to you"):
        await bind(shop, "mallory@example.com", text, signature)
    assert await wallets.owners(shop.engine, {ann.address}) == {}


async def test_an_expired_nonce_does_not_bind(shop: Shop) -> None:
    ann = await shop.evm.person()
    text, signature = await signed(shop, "ann@example.com", ann)
    async with shop.engine.begin() as conn:
        await conn.execute(
            update(wallets.nonces).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with pytest.raises(NotBound, match="has expired"):
        await bind(shop, "ann@example.com", text, signature)


async def test_messages_for_another_site_chain_or_time_are_refused(shop: Shop) -> None:
    ann = await shop.evm.person()
    cases = {
        "not written for this site": Site("https://evil.example", shop.config.chain_id),
        "not this site's": Site("http://chat.example.com", shop.config.chain_id),
        "this site takes payments on chain": Site(SITE_URI, shop.config.chain_id + 1),
    }
    for reason, site in cases.items():
        text, signature = await signed(shop, "ann@example.com", ann, site)
        with pytest.raises(NotBound, match=reason):
            await bind(shop, "ann@example.com", text, signature)
    message = await wallets.challenge(shop.engine, shop.site, "ann@example.com", ann.address)
    for reason, changed in {
        "issued in the future": replace(message, issued_at=message.issued_at + timedelta(hours=1)),
        "too old": replace(message, issued_at=message.issued_at - timedelta(hours=1)),
        "has expired": replace(message, expiration_time=message.issued_at - timedelta(seconds=1)),
        "not valid yet": replace(message, not_before=message.issued_at + timedelta(hours=1)),
    }.items():
        with pytest.raises(NotBound, match=reason):
            await bind(shop, "ann@example.com", changed.text(), ann.sign(changed.text()))
    assert await wallets.of_account(shop.engine, "ann@example.com") == []


async def test_signatures_that_do_not_hold_are_refused(shop: Shop) -> None:
    ann, eve = await shop.evm.person(), await shop.evm.person()
    text, signature = await signed(shop, "ann@example.com", ann)
    for reason, sig in {
        "not made by the wallet": eve.sign(text),
        "not hexadecimal": "0xzz",
        "not 65 bytes": "0x" + "11" * 64,
        "does not belong to any key": "0x" + "00" * 65,
    }.items():
        with pytest.raises(NotBound, match=reason):
            await bind(shop, "ann@example.com", text, sig)
    altered = text.replace("Bind this wallet", "Bind these wallets")
    with pytest.raises(NotBound, match="not made by the wallet"):
        await bind(shop, "ann@example.com", altered, signature)
    for reason, bad in {
        "not a Sign-In with Ethereum message": "hello",
        "EIP-55": text.replace(siwe.parse(text).address, ann.address),
        "Only version 1": text.replace("Version: 1", "Version: 2"),
        "lines this app does not accept": text + "\nSomething: else",
        "too long": text + "x" * 5000,
    }.items():
        with pytest.raises(NotBound, match=reason):
            await bind(shop, "ann@example.com", bad, signature)
    await bind(shop, "ann@example.com", text, signature)  # the real one still binds


async def test_contract_wallets_are_refused_plainly(shop: Shop) -> None:
    """A Safe or another smart account signs by EIP-1271, which is not checked here."""
    owner = await shop.evm.person()
    contract = str(shop.token.address).lower()
    message = await wallets.challenge(shop.engine, shop.site, "ann@example.com", contract)
    with pytest.raises(NotBound, match="contract wallet"):
        await bind(shop, "ann@example.com", message.text(), owner.sign(message.text()))


async def test_a_wallet_belongs_to_one_account_even_when_raced(shop: Shop) -> None:
    ann = await shop.evm.person()
    people = [f"p{i}@example.com" for i in range(8)]
    signed_by = [await signed(shop, p, ann) for p in people]

    async def attempt(account: str, pair: tuple[str, str]) -> bool:
        try:
            await bind(shop, account, *pair)
            return True
        except NotBound as refused:
            assert "bound to another account" in str(refused)
            return False

    outcomes = await asyncio.gather(
        *(attempt(p, s) for p, s in zip(people, signed_by, strict=True))
    )
    assert outcomes.count(True) == 1
    owner = people[outcomes.index(True)]
    assert await wallets.owners(shop.engine, {ann.address}) == {ann.address: owner}


async def test_an_address_that_is_not_one_gets_no_message(shop: Shop) -> None:
    with pytest.raises(NotBound, match="not an Ethereum address"):
        await wallets.challenge(shop.engine, shop.site, "ann@example.com", "0x1234")

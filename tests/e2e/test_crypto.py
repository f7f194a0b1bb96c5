"""Crypto top-ups in the real app process against a real node (anvil): a person binds a wallet by
Sign-In with Ethereum as the browser's element does, buys a pack in the stablecoin, sees the
payment counted block by block and the badge move once the confirmations are mined; /billing shows
the transaction; the app stopped while a payment confirms catches up when it starts again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from credits.ledger import UNITS_PER_CREDIT
from tests.crypto.evm import Evm, Person
from tests.e2e.client import ChatSession, login, messages
from tests.e2e.conftest import ChainShop, new_user, open_chain_shop

pytestmark = pytest.mark.e2e

C = UNITS_PER_CREDIT
WELCOME = 1000 * C


async def customer(shop: ChainShop) -> tuple[str, Person, ChatSession]:
    """A new person with a funded wallet and a chat open."""
    user, password = await new_user(shop)  # type: ignore[arg-type]
    wallet = await shop.evm.person()
    await shop.evm.mint(shop.token, wallet.address, 100_000_000)
    chat = ChatSession(shop.base_url, await login(shop.base_url, user, password))
    await chat.connect()
    await chat.wait_for_badge(0)
    return user, wallet, chat


async def bind(chat: ChatSession, wallet: Person) -> dict[str, Any]:
    """What WalletConnect.jsx does: the message for the wallet's address, signed, sent back."""
    asked = await chat.call_action_for(
        {"name": "wallet_siwe_message", "payload": {"address": wallet.address}}
    )
    assert "message" in asked, asked
    return await chat.call_action_for(  # type: ignore[no-any-return]
        {"name": "wallet_siwe_bind",
         "payload": {"message": asked["message"], "signature": wallet.sign(asked["message"])}}
    )  # fmt: skip


async def quote(chat: ChatSession, pack: str = "starter") -> dict[str, Any]:
    """/buy, then the pack's stablecoin button: the CryptoPay element's props."""
    events = await chat.send("/buy")
    actions = [a for n, a in events if n == "action"]
    [button] = [
        a for a in actions if a["payload"] == {"pack": pack, "provider": "crypto", "asset": "token"}
    ]
    start = len(chat.events)
    assert await chat.call_action(button) == 200
    # The button and the QR code come as two events, in either order (Chainlit sends a
    # message's elements at once; the image is written to a file first).
    await chat.wait_until(lambda ev: {"CryptoPay", "png"} <= {
        "png" if str(d.get("name")).endswith(".png") else d.get("name")
        for n, d in ev if n == "element"}, start)  # fmt: skip
    said = [m["output"] for m in messages(chat.events[start:]) if "Send exactly" in m["output"]]
    assert said and "**5 USDC**" in said[0], said
    return next(d["props"] for n, d in chat.events[start:]
                if n == "element" and d.get("name") == "CryptoPay")  # fmt: skip


def badge_shows(units: int) -> Callable[[list[tuple[str, Any]]], bool]:
    return lambda events: any(
        n == "element" and d.get("name") == "CreditBadge" and d["props"]["units"] == units
        for n, d in events
    )


def toasts(chat: ChatSession, after: int) -> list[str]:
    return [d["message"] for n, d in chat.events[after:] if n == "toast"]


async def test_a_person_binds_a_wallet_pays_in_the_stablecoin_and_sees_the_credits(
    chain_shop: ChainShop,
) -> None:
    _, wallet, chat = await customer(chain_shop)
    bound = await bind(chat, wallet)
    assert bound == {"ok": True, "text": f"Wallet {wallet.address} is bound to your account."}
    replayed = await chat.call_action_for(
        {"name": "wallet_siwe_bind", "payload": {"message": "x", "signature": "0x"}}
    )
    assert replayed["ok"] is False
    props = await quote(chat)
    after = len(chat.events)
    tx = await chain_shop.evm.signed(wallet, {"to": props["to"], "data": props["data"]})
    seen = "Payment seen: 5 USDC"
    await chat.wait_until(lambda ev: seen in [d["message"] for n, d in ev if n == "toast"], after)
    assert not badge_shows(WELCOME + 500 * C)(chat.events[after:])
    await chain_shop.evm.mine(2)
    await chat.wait_until(badge_shows(WELCOME + 500 * C), after, timeout=20)
    assert "Payment received: +500 credits" in toasts(chat, after)
    events = await chat.send("/billing")
    [table] = [m["output"] for m in messages(events) if "Your purchases" in m["output"]]
    assert f"[{tx}](https://explorer.example/tx/{tx})" in table and "paid" in table
    async with httpx.AsyncClient(base_url=chain_shop.base_url, cookies=chat.cookies) as http:
        page = (await http.get("/billing")).text
    assert (
        f"<a href='https://explorer.example/tx/{tx}' target='_blank' rel='noopener'>{tx}</a>"
        in page
    )
    events = await chat.send(f"/paid {tx}")
    assert any("was credited already" in m["output"] for m in messages(events)), events
    events = await chat.send("/wallets")
    assert any(wallet.address in m["output"] for m in messages(events))
    await chat.close()
    async with httpx.AsyncClient(base_url=chain_shop.base_url) as http:
        watcher = (await http.get("/healthz")).json()["crypto_watcher"]
    assert watcher["ok"] and "behind the head" in watcher["detail"], watcher


async def test_another_persons_transaction_buys_nothing(chain_shop: ChainShop) -> None:
    _, ann_wallet, ann = await customer(chain_shop)
    _, _, bob = await customer(chain_shop)
    await bind(ann, ann_wallet)
    props = await quote(ann)
    tx = await chain_shop.evm.signed(ann_wallet, {"to": props["to"], "data": props["data"]})
    events = await bob.send(f"/paid {tx}")
    assert any("bound to another account" in str(d.get("output", "")) for _, d in events)
    await ann.close()
    await bob.close()


async def test_the_app_stopped_while_a_payment_confirms_catches_up(
    anvil: str, tmp_path: Path
) -> None:
    shop = await open_chain_shop(Evm.at(anvil), tmp_path)
    shop.start()
    try:
        user, wallet, chat = await customer(shop)
        await bind(chat, wallet)
        props = await quote(chat)
        await chat.close()
        shop.stop()  # the app (and its watcher) goes away
        await shop.evm.signed(wallet, {"to": props["to"], "data": props["data"]})
        await shop.evm.mine(5)
        shop.start()
        password = "a-long-enough-password"
        chat = ChatSession(shop.base_url, await login(shop.base_url, user, password))
        await chat.connect()
        await chat.wait_until(badge_shows(WELCOME + 500 * C), 0, timeout=30)
        await chat.close()
    finally:
        shop.stop()
        await shop.evm.close()


async def test_a_wallet_is_bound_by_pasting_a_signature_and_unbound(chain_shop: ChainShop) -> None:
    """Without a browser wallet: the address, the message signed in any wallet, the signature."""
    _, wallet, chat = await customer(chain_shop)

    async def type_in(asked: str) -> str:
        if "address of the wallet" in asked:
            return wallet.address
        message = asked.split("```text\n", 1)[1].rsplit("\n```", 1)[0]
        return wallet.sign(message)

    chat.answer = type_in
    start = len(chat.events)
    assert await chat.call_action({"name": "wallet_sign_manually", "payload": {}}) == 200
    bound = f"Wallet {wallet.address} is bound to your account."
    await chat.wait_until(lambda ev: any(bound == d.get("output") for _, d in ev), start, 30)
    events = await chat.send("/wallets")
    [unbind] = [a for n, a in events if n == "action" and a["name"] == "wallet_unbind"]
    assert unbind["payload"] == {"address": wallet.address}
    start = len(chat.events)
    assert await chat.call_action(unbind) == 200
    await chat.wait_until(
        lambda ev: any("is unbound" in str(d.get("output", "")) for _, d in ev), start, 30
    )
    events = await chat.send("/wallets")
    assert any("no wallet bound yet" in m["output"] for m in messages(events))
    await chat.close()


async def test_a_node_on_another_chain_stops_the_app_at_startup(anvil: str, tmp_path: Path) -> None:
    evm = Evm.at(anvil)
    shop = await open_chain_shop(evm, tmp_path)
    shop.settings["CRYPTO_CHAIN_ID"] = "1"  # the node serves 31337
    try:
        with pytest.raises(RuntimeError, match="the app exited with 3"):
            shop.start()
        said = (tmp_path / "app.log").read_text()
        assert (
            "Not starting: The node at CRYPTO_RPC_URL serves chain 31337, not CRYPTO_CHAIN_ID 1"
            in said
        )
    finally:
        shop.stop()
        await evm.close()

"""Buying credits in the real app process, as a person and as the providers would: `/buy`, a
pack's button, the provider's page (the loopback Stripe and PayPal), back to the app's return
page; the badge of every open chat moves with a toast and a message, whichever of the return page
and the webhook comes first. Forged webhooks over HTTP, a delayed payment, a refund made at
Stripe and one by an administrator, `/billing`, another person's order."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from credits.ledger import UNITS_PER_CREDIT
from credits.receipts import check_receipt
from credits.store import Ledger
from settings import ROOT
from tests.e2e.client import ChatSession, login, messages
from tests.e2e.conftest import ADMIN, Shop, ledger_beside, new_user
from tests.e2e.process import app_environment

pytestmark = pytest.mark.e2e

C = UNITS_PER_CREDIT
WELCOME = 1000 * C


@pytest.fixture
async def ledger(shop: Shop) -> AsyncIterator[Ledger]:
    async with ledger_beside(shop.data_dir) as book:
        yield book


async def person(shop: Shop, tabs: int = 1) -> tuple[str, httpx.Cookies, list[ChatSession]]:
    """A new person (signed up with a password) with `tabs` chats open."""
    user, password = await new_user(shop)
    cookies = await login(shop.base_url, user, password)
    opened = []
    for _ in range(tabs):
        chat = ChatSession(shop.base_url, cookies)
        await chat.connect()
        await chat.wait_for_badge(0)
        opened.append(chat)
    return user, cookies, opened


def badge_shows(units: int) -> Callable[[list[tuple[str, Any]]], bool]:
    return lambda events: any(
        n == "element" and d.get("name") == "CreditBadge" and d["props"]["units"] == units
        for n, d in events
    )


async def pay_link(chat: ChatSession, pack: str, provider: str) -> str:
    """/buy, then the pack's button: the link to the provider's page."""
    events = await chat.send("/buy")
    [offer] = [m for m in messages(events, "assistant_message") if "Buy credits" in m["output"]]
    actions = [a for n, a in events if n == "action"] or offer.get("actions", [])
    [button] = [a for a in actions if a["payload"] == {"pack": pack, "provider": provider}]
    start = len(chat.events)
    assert await chat.call_action(button) == 200
    await chat.wait_until(
        lambda ev: any("Pay with" in str(d.get("output", "")) for _, d in ev), start
    )
    said = next(
        d["output"] for _, d in chat.events[start:] if "Pay with" in str(d.get("output", ""))
    )
    found = re.search(r"\]\((http[^)]+)\)", said)
    assert found, said
    return found[1]


async def test_a_person_buys_credits_with_stripe_and_every_tab_sees_them(
    shop: Shop, ledger: Ledger
) -> None:
    user, cookies, tabs = await person(shop, tabs=2)
    offered = {c["id"] for c in [d for n, d in tabs[0].events if n == "set_commands"][-1]}
    assert {"buy", "billing"} <= offered and not {"refund", "revenue"} & offered
    link = await pay_link(tabs[0], "starter", "stripe")
    seen = [len(t.events) for t in tabs]
    async with httpx.AsyncClient(cookies=cookies, follow_redirects=True, timeout=30) as browser:
        page = await browser.get(link)
        assert page.status_code == 200 and "5.00 USD" in page.text
        session_id = link.rsplit("/", 1)[1]
        back = await browser.post(
            f"{shop.stripe.url}/checkout/{session_id}/pay", data={"method": "card"}
        )
    assert back.url.path == "/payments/stripe/return"
    assert "Payment received: 500 credits are on your balance" in back.text
    for tab, after in zip(tabs, seen, strict=True):
        await tab.wait_until(badge_shows(WELCOME + 500 * C), after, timeout=10)
        toast = await tab.wait_for("toast", after, timeout=10)
        assert toast["message"] == "Payment received: +500 credits"
        await tab.wait_until(
            lambda ev: any("**500 credits** were added" in str(d.get("output", "")) for _, d in ev),
            after, timeout=10,
        )  # fmt: skip
    purchases = [t for t in await ledger.history(user) if t.code == "purchase"]
    assert [t.transfer_id for t in purchases] == [f"stripe:{session_id}"]
    for tab in tabs:
        await tab.close()


async def test_a_person_buys_credits_with_paypal(shop: Shop, ledger: Ledger) -> None:
    user, cookies, [tab] = await person(shop)
    link = await pay_link(tab, "standard", "paypal")
    order_id = link.rsplit("token=", 1)[1]
    after = len(tab.events)
    async with httpx.AsyncClient(cookies=cookies, follow_redirects=True, timeout=30) as browser:
        assert "20.00 USD" in (await browser.get(link)).text
        back = await browser.post(f"{shop.paypal.url}/checkoutnow/{order_id}")
    assert "2,200 credits are on your balance" in back.text
    await tab.wait_until(badge_shows(WELCOME + 2200 * C), after, timeout=10)
    assert len(shop.paypal.orders[order_id].captures) == 1
    assert (await ledger.balance(user)).available == WELCOME + 2200 * C
    await tab.close()


async def test_a_delayed_payment_says_processing_then_credits_when_it_clears(
    shop: Shop, ledger: Ledger
) -> None:
    user, cookies, [tab] = await person(shop)
    link = await pay_link(tab, "starter", "stripe")
    session_id = link.rsplit("/", 1)[1]
    after = len(tab.events)
    async with httpx.AsyncClient(cookies=cookies, follow_redirects=True, timeout=30) as browser:
        back = await browser.post(
            f"{shop.stripe.url}/checkout/{session_id}/pay", data={"method": "bank"}
        )
    assert "Your payment is processing" in back.text
    toast = await tab.wait_for("toast", after, timeout=10)
    assert toast["message"] == "Payment processing"
    assert (await ledger.balance(user)).available == WELCOME
    after = len(tab.events)
    shop.stripe.clear(session_id)  # the bank transfer arrives: Stripe sends the webhook
    await tab.wait_until(badge_shows(WELCOME + 500 * C), after, timeout=10)
    await tab.close()


async def test_refunds_at_stripe_and_by_an_administrator_take_credits_back(
    shop: Shop, ledger: Ledger
) -> None:
    user, cookies, [tab] = await person(shop)
    link = await pay_link(tab, "large", "stripe")
    session_id = link.rsplit("/", 1)[1]
    async with httpx.AsyncClient(cookies=cookies, follow_redirects=True, timeout=30) as browser:
        await browser.post(f"{shop.stripe.url}/checkout/{session_id}/pay", data={"method": "card"})
    await tab.wait_until(badge_shows(WELCOME + 6000 * C), 0, timeout=10)

    after = len(tab.events)
    shop.stripe.refund(session_id, 1000)  # 10.00 of 50.00 refunded in Stripe's dashboard
    await tab.wait_until(badge_shows(WELCOME + 4800 * C), after, timeout=10)
    assert (await tab.wait_for("toast", after, timeout=10))["message"] == "1,200 credits taken back"

    admin = ChatSession(shop.base_url, await login(shop.base_url, *ADMIN))
    await admin.connect()
    order_id = next(t.meta["order"] for t in await ledger.history(user) if t.code == "purchase")
    after = len(tab.events)
    said = await admin.send(f"/refund {order_id} 15.00")
    assert any("1,800 credits were taken back" in m["output"] for m in messages(said)), [
        str(d.get("output"))[:300] for _, d in said if isinstance(d, dict)
    ]
    await tab.wait_until(badge_shows(WELCOME + 3000 * C), after, timeout=10)
    refused = await admin.send(f"/refund {order_id} 30.00")
    assert any("has 2500 left to refund" in str(d.get("output", "")) for _, d in refused)
    await admin.close()
    async with httpx.AsyncClient(base_url=shop.base_url, cookies=cookies) as browser:
        billing = (await browser.get("/billing")).text
    assert "partly refunded" in billing and "50.00 USD" in billing
    await tab.close()


async def test_forged_unknown_and_foreign_requests_change_nothing(
    shop: Shop, ledger: Ledger
) -> None:
    user, _, [tab] = await person(shop)
    link = await pay_link(tab, "starter", "stripe")
    session_id = link.rsplit("/", 1)[1]
    completed = shop.stripe.pay(session_id, send=False)
    webhook = f"{shop.base_url}/api/payments/stripe/webhook"
    async with httpx.AsyncClient(timeout=30) as http:
        body, headers = shop.stripe.signed(completed, secret="whsec_not_ours")
        assert (await http.post(webhook, content=body, headers=headers)).status_code == 400
        body, headers = shop.stripe.signed(completed, timestamp=1)
        assert (await http.post(webhook, content=body, headers=headers)).status_code == 400
        assert (await http.post(webhook, content=b"{}")).status_code == 400
        nowhere = f"{shop.base_url}/api/payments/bitcoin/webhook"
        assert (await http.post(nowhere, content=b"{}")).status_code == 404
        other = shop.stripe.event("customer.created", {"id": "cus_1", "object": "customer"}, False)
        body, headers = shop.stripe.signed(other)
        ignored = await http.post(webhook, content=body, headers=headers)  # kept, acted on by none
        assert ignored.json() == {"received": True, "event": other["id"]}
    assert (await ledger.balance(user)).available == WELCOME

    _, mallory, [spy] = await person(shop)
    order_id = next(iter(re.findall(r"ord_\w+", str(shop.stripe.sessions[session_id].params))))
    async with httpx.AsyncClient(base_url=shop.base_url, cookies=mallory) as browser:
        stolen = await browser.get("/payments/stripe/return", params={"order": order_id})
        assert stolen.status_code == 404 and "no such order" in stolen.text
        assert "No purchases yet" in (await browser.get("/billing")).text
    async with httpx.AsyncClient(base_url=shop.base_url) as anonymous:
        assert (await anonymous.get("/billing")).status_code == 302
    assert shop.stripe.deliver(completed) == 200  # the real one, late
    await tab.wait_until(badge_shows(WELCOME + 500 * C), 0, timeout=10)
    for chat in (tab, spy):
        await chat.close()


async def test_the_ledger_receipt_of_a_purchase_and_the_command_line(
    shop: Shop, ledger: Ledger
) -> None:
    """/billing links each credited purchase to its ledger receipt, which checks against the
    ledger's key (and is no one else's); `python -m payments` reconciles, refunds and reports."""
    user, cookies, [tab] = await person(shop)
    link = await pay_link(tab, "starter", "stripe")
    session_id = link.rsplit("/", 1)[1]
    async with httpx.AsyncClient(cookies=cookies, follow_redirects=True, timeout=30) as browser:
        await browser.post(f"{shop.stripe.url}/checkout/{session_id}/pay", data={"method": "card"})
    await tab.wait_until(badge_shows(WELCOME + 500 * C), 0, timeout=10)
    await tab.close()
    order_id = next(t.meta["order"] for t in await ledger.history(user) if t.code == "purchase")
    async with httpx.AsyncClient(base_url=shop.base_url, cookies=cookies) as browser:
        assert f"/billing/receipt/{order_id}" in (await browser.get("/billing")).text
        for _ in range(50):  # a checkpoint is signed every second here
            answer = await browser.get(f"/billing/receipt/{order_id}")
            if answer.status_code != 425:
                break
            await asyncio.sleep(0.2)
    assert answer.status_code == 200
    assert check_receipt(answer.json(), ledger.pinned_key)
    assert f"stripe:{session_id}" in answer.json()["entry"]
    _, mallory, _ = await person(shop, tabs=0)
    async with httpx.AsyncClient(base_url=shop.base_url, cookies=mallory) as browser:
        assert (await browser.get(f"/billing/receipt/{order_id}")).status_code == 404

    env = app_environment(shop.data_dir, **shop.settings)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "payments", *args], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip

    reconciled = await asyncio.to_thread(cli, "reconcile")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "DRIFT" not in reconciled.stdout and "checked" in reconciled.stdout
    refunded = await asyncio.to_thread(cli, "refund", order_id, "--amount", "1.00")
    assert refunded.returncode == 0, refunded.stderr
    assert (
        "partially_refunded" in refunded.stdout and "100.000 credits taken back" in refunded.stdout
    )
    assert (await ledger.balance(user)).available == WELCOME + 400 * C
    too_much = await asyncio.to_thread(cli, "refund", order_id, "--amount", "99.00")
    assert too_much.returncode == 2 and "left to refund" in too_much.stderr
    report = await asyncio.to_thread(cli, "report")
    assert report.returncode == 0 and "Revenue, last 30 days" in report.stdout
    assert order_id in report.stdout  # among the refunds


async def test_crypto_commands_say_crypto_is_not_offered_where_only_cards_are(shop: Shop) -> None:
    _, _, [tab] = await person(shop)
    offered = {c["id"] for c in [d for n, d in tab.events if n == "set_commands"][-1]}
    assert "buy" in offered and not {"wallets", "paid"} & offered
    events = await tab.send("/wallets")
    said = [str(d.get("output", "")) for _, d in events]
    assert any("Crypto payments are not offered here." in s for s in said), said
    await tab.close()

"""Webhooks as providers really send them, over HTTP into the app's webhook routes (SQLite and
PostgreSQL): 1,000 deliveries for 40 orders of 5 people through Stripe and PayPal, every genuine
event delivered up to 5 times, in no order, 20 at a time, among forged and stale copies, applied
by the notification worker as they arrive. Every
paid order is credited exactly once, every refund and dispute taken back once, every forged
delivery refused; `verify` passes and reconciliation finds no drift.

And the process killed (SIGKILL) between the ledger's grant and the order's update, 20 times: the
next delivery completes each order, never granting twice. And two replicas' workers on the same
stored notifications at once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api import payments as payment_routes
from auth.sessions import Standings
from credits.ledger import UNITS_PER_CREDIT, Balance
from credits.store import Ledger
from credits.verify import verify
from payments import orders, purchases
from payments.fulfilment import Change, apply
from payments.inbox import Inbox, store
from payments.packs import Pack
from payments.paypal import PayPalOrders
from payments.provider import Payment, ReturnUrls
from payments.stripe import StripeCheckout
from settings import ROOT
from storage.engine import create_engine
from tests.fakes.paypal_server import CERT_URL, FakePayPal, now_text
from tests.fakes.stripe_server import FakeStripe

PACK = Pack("ten", "Ten", "usd", 1000, 100)  # 100 credits for 10.00 USD
URLS = ReturnUrls("http://app.test/payments/x/return?order={order}", "http://app.test/")
C = UNITS_PER_CREDIT
PEOPLE = [f"p{n}@example.com" for n in range(5)]
# What happens to order i at its provider (by i % 6), and what the person keeps of its 100 credits.
KEPT = {0: 100, 1: 75, 2: 0, 3: 0, 4: 100, 5: 0}


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeStripe, FakePayPal]]:
    stripe, paypal = FakeStripe("whsec_storm").start(), FakePayPal("cid", "csecret", "WH-S").start()
    yield stripe, paypal
    stripe.stop()
    paypal.stop()


def providers(fakes: tuple[FakeStripe, FakePayPal]) -> dict[str, StripeCheckout | PayPalOrders]:
    stripe, paypal = fakes
    return {
        "stripe": StripeCheckout(stripe.api_key, "whsec_storm", api_base=stripe.url),
        "paypal": PayPalOrders(
            "cid", "csecret", "WH-S", api_base=paypal.url, certificates={CERT_URL: paypal.cert_pem}
        ),
    }


async def happen_at_stripe(fake: FakeStripe, ref: str, i: int) -> None:
    """Order i's story at Stripe; its events are kept, not sent."""
    if i % 6 == 5:
        fake.expire(ref, send=False)
        return
    fake.pay(ref, send=False)
    if i % 6 in (1, 2):
        fake.refund(ref, 250 if i % 6 == 1 else 1000, send=False)
    elif i % 6 in (3, 4):
        fake.dispute(ref, send=False)
        fake.close_dispute(ref, won=i % 6 == 4, send=False)


async def happen_at_paypal(fake: FakePayPal, paypal: PayPalOrders, ref: str, i: int) -> None:
    """Order i's story at PayPal (the capture is ours: the return page would have made it)."""
    if i % 6 == 5:
        fake.orders[ref].pending_capture = True
    fake.approve(ref, send=False)
    await paypal.confirm(ref)
    if i % 6 == 5:
        fake.settle_capture(ref, ok=False, send=False)
    elif i % 6 in (1, 2):
        fake.refund(ref, "2.50" if i % 6 == 1 else "10.00", send=False)
    elif i % 6 in (3, 4):
        fake.dispute(ref, send=False)
        fake.resolve_dispute(ref, won=i % 6 == 4, send=False)


def deliveries(
    fakes: tuple[FakeStripe, FakePayPal], total: int, rng: random.Random
) -> list[tuple[str, bytes, dict[str, str], bool]]:
    """(provider, body, headers, genuine): every event 1-5 times, then forged and stale copies up
    to `total`, shuffled."""
    stripe, paypal = fakes
    events = [("stripe", e) for e in stripe.events] + [("paypal", e) for e in paypal.events]
    out: list[tuple[str, bytes, dict[str, str], bool]] = []
    for name, event in events:
        for _ in range(rng.randint(1, 5)):
            body, headers = (stripe if name == "stripe" else paypal).signed(event)
            out.append((name, body, headers, True))
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    while len(out) < total:
        name, event = rng.choice(events)
        if name == "stripe":
            forged = rng.choice([{"secret": "whsec_guess"}, {"timestamp": 1_000_000}])
            body, headers = stripe.signed(event, **forged)  # type: ignore[arg-type]
        else:
            forged = rng.choice([{"key": impostor}, {"when": now_text(-7200)}])
            body, headers = paypal.signed(event, **forged)  # type: ignore[arg-type]
        out.append((name, body, headers, False))
    rng.shuffle(out)
    return out


async def test_a_thousand_deliveries_credit_each_paid_order_once(
    engine: AsyncEngine, ledger: Ledger, fakes: tuple[FakeStripe, FakePayPal]
) -> None:
    rng = random.Random(1234)
    chosen = providers(fakes)
    stripe, paypal = fakes
    stripe.events.clear()
    paypal.events.clear()
    made: list[tuple[orders.Order, int]] = []
    for i in range(40):
        name = "stripe" if i % 2 == 0 else "paypal"
        order, _ = await purchases.start(engine, chosen[name], PACK, PEOPLE[i % 5], URLS)
        made.append((order, i // 2))
    for order, story in made:
        ref = order.provider_ref or ""
        if order.provider == "stripe":
            await happen_at_stripe(stripe, ref, story)
        else:
            await happen_at_paypal(paypal, chosen["paypal"], ref, story)  # type: ignore[arg-type]

    told: list[Change] = []

    async def tell(change: Change) -> None:
        told.append(change)

    worker = Inbox(engine, ledger, chosen, tell)
    app = FastAPI()
    app.include_router(
        payment_routes.router(engine, ledger, chosen, Standings(engine), "secret", tell, worker)
    )
    sent = deliveries(fakes, 1000, rng)
    statuses: Counter[tuple[bool, int]] = Counter()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        for start in range(0, len(sent), 20):
            batch = sent[start : start + 20]
            answers = await asyncio.gather(*(
                http.post(f"/api/payments/{name}/webhook", content=body, headers=headers)
                for name, body, headers, _ in batch
            ))  # fmt: skip
            for (_, _, _, genuine), answer in zip(batch, answers, strict=True):
                statuses[genuine, answer.status_code] += 1
            await worker.drain()  # as the app's worker does between deliveries
    assert len(sent) == 1000
    assert set(statuses) == {(True, 200), (False, 400)}, statuses

    for who in PEOPLE:
        mine = [(o, s) for o, s in made if o.account == who]
        assert await ledger.balance(who) == Balance(
            sum(KEPT[s % 6] for _, s in mine) * C, 0, sum(KEPT[s % 6] for _, s in mine) * C
        ), who
        history = await ledger.history(who)
        purchased = Counter(t.transfer_id for t in history if t.code == "purchase")
        assert sorted(purchased) == sorted(o.grant_id for o, s in mine if s % 6 != 5)
        assert set(purchased.values()) == {1}
    expected = {0: "paid", 1: "partially_refunded", 2: "refunded", 3: "dispute_lost",
                4: "dispute_won", 5: "expired"}  # fmt: skip
    for order, story in made:
        state = (await orders.get(engine, order.id)).state
        want = "failed" if story % 6 == 5 and order.provider == "paypal" else expected[story % 6]
        assert state == want, (order.provider, story)
    assert sum(c.granted for c in told) == sum(PACK.units for _, s in made if s % 6 != 5)
    report = await purchases.reconcile(engine, ledger, chosen)  # type: ignore[arg-type]
    assert report.drift == [] and report.unreachable == [] and report.changed == []


CHILD = """
import asyncio, os, signal, sys
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from credits.store import Ledger
from payments import fulfilment, orders
from payments.provider import Payment
from storage.engine import create_engine

class DyingLedger(Ledger):
    async def grant(self, *args, **kwargs):
        done = await super().grant(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)  # after the ledger committed, before the order
        return done

async def main():
    db, ledger_url, data_dir, key, order_id = sys.argv[1:]
    engine = create_engine(db)
    book = DyingLedger(ledger_url, Path(data_dir), Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key)))
    await book.start(background=False)
    order = await orders.get(engine, order_id)
    payment = Payment(order.provider_ref, order.id, "paid", order.currency, order.amount_minor)
    await fulfilment.apply(engine, book, order.id, payment)

asyncio.run(main())
"""


async def test_killed_between_grant_and_order_twenty_times_then_completed_once(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    key = Ed25519PrivateKey.generate()
    ledger_url = database_url
    if ledger_url.startswith("sqlite"):
        ledger_url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    book = Ledger(ledger_url, tmp_path, key)
    await book.start(background=False)
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    ).hex()
    try:
        killed = []
        for n in range(20):
            order = await orders.create(engine, "kim", "stripe", "ten", "usd", 1000, PACK.units)
            await orders.started(engine, order.id, f"cs_killed_{n}")
            child = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", CHILD, database_url, ledger_url, str(tmp_path), raw, order.id],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
            )  # fmt: skip
            assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
            assert (await orders.get(engine, order.id)).state == "pending"  # the order never moved
            killed.append(await orders.get(engine, order.id))
        assert (await book.balance("kim")).available == 20 * PACK.units  # granted, all 20
        for order in killed:  # the next delivery of each
            payment = Payment(order.provider_ref or "", order.id, "paid", "usd", 1000)
            change = await apply(engine, book, order.id, payment)
            assert change.order.state == "paid" and change.order.transfer_id == order.grant_id
        assert (await book.balance("kim")).available == 20 * PACK.units  # and not one more
        history = await book.history("kim", limit=100)
        assert len(history) == 20 and {t.code for t in history} == {"purchase"}
        report = await verify(book)
        assert report.ok, report.problems
    finally:
        await book.close()


async def test_two_replicas_work_the_same_notifications_and_each_is_applied_and_told_once(
    engine: AsyncEngine, ledger: Ledger, database_url: str, fakes: tuple[FakeStripe, FakePayPal]
) -> None:
    """Two workers (two replicas, each with its own connection pool) drain the same stored
    notifications at once: every row is claimed by one of them, each purchase is granted and
    told once."""
    stripe_fake, _ = fakes
    chosen = {"stripe": providers(fakes)["stripe"]}
    asked: list[str] = []
    confirm = chosen["stripe"].confirm

    async def counted(ref: str) -> Payment:  # what each worker asks Stripe
        asked.append(ref)
        return await confirm(ref)

    chosen["stripe"].confirm = counted  # type: ignore[method-assign]
    stored = []
    for n in range(12):
        order, _ = await purchases.start(engine, chosen["stripe"], PACK, f"r{n % 3}", URLS)
        event = stripe_fake.pay(order.provider_ref or "", send=False)
        body, headers = stripe_fake.signed(event)
        notice = await chosen["stripe"].verify(body, {k.lower(): v for k, v in headers.items()})
        stored.append((order, notice, body))
    await store(engine, [("stripe", notice, body) for _, notice, body in stored])

    told: list[Change] = []

    async def tell(change: Change) -> None:
        told.append(change)

    other = create_engine(database_url)
    try:
        workers = [Inbox(engine, ledger, chosen, tell), Inbox(other, ledger, chosen, tell)]
        await asyncio.gather(*(w.drain() for w in workers))
    finally:
        await other.dispose()
    assert sorted(c.order.id for c in told) == sorted(o.id for o, _, _ in stored)
    assert sorted(asked) == sorted(o.provider_ref for o, _, _ in stored)  # each claimed once
    for n in range(3):
        assert (await ledger.balance(f"r{n}")).available == 4 * PACK.units
    async with engine.connect() as conn:
        waiting = await conn.execute(
            text("SELECT count(*) FROM payment_events WHERE applied_at IS NULL")
        )
        assert waiting.scalar() == 0

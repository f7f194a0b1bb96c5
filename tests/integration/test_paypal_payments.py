"""Buying credits through PayPal (Orders v2 with the official `paypal-server-sdk`, against a
loopback PayPal), on SQLite and PostgreSQL: approval and capture, a pending capture, refunds and
disputes, notifications verified both ways (PayPal's certificate here, or PayPal's own check) and
forged ones refused; every story checked against balances, orders and `verify`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.ledger import UNITS_PER_CREDIT, Balance
from credits.store import Ledger
from payments import orders, purchases
from payments.errors import ForgedNotice, ProviderDown
from payments.packs import Pack
from payments.paypal import PayPalOrders
from payments.provider import ReturnUrls
from tests.fakes.paypal_server import CERT_URL, FakePayPal, now_text

STARTER = Pack("starter", "Starter", "usd", 500, 500)  # 500 credits for 5.00 USD
URLS = ReturnUrls("http://app.test/payments/paypal/return?order=x", "http://app.test/")
C = UNITS_PER_CREDIT


@pytest.fixture(scope="module")
def fake() -> Iterator[FakePayPal]:
    made = FakePayPal("client-id", "client-secret", "WH-ID-1").start()
    yield made
    made.stop()


@pytest.fixture(params=["local", "api"])
def paypal(fake: FakePayPal, request: pytest.FixtureRequest) -> PayPalOrders:
    fake.down = False
    return PayPalOrders(
        "client-id", "client-secret", "WH-ID-1", api_base=fake.url, verify=request.param,
        certificates={CERT_URL: fake.cert_pem},
    )  # fmt: skip


async def bought(engine: AsyncEngine, paypal: PayPalOrders, who: str) -> orders.Order:
    order, checkout = await purchases.start(engine, paypal, STARTER, who, URLS)
    assert checkout.url.endswith(f"/checkoutnow?token={checkout.ref}")
    return order


async def notify(
    engine: AsyncEngine,
    ledger: Ledger,
    paypal: PayPalOrders,
    fake: FakePayPal,
    event: dict,
    **signing: object,
) -> purchases.Change | None:
    body, headers = fake.signed(event, **signing)  # type: ignore[arg-type]
    lower = {k.lower(): v for k, v in headers.items()}
    return await purchases.on_notice(engine, ledger, paypal, body, lower)


async def test_an_approved_order_is_captured_once_and_credited_once(
    engine: AsyncEngine, ledger: Ledger, paypal: PayPalOrders, fake: FakePayPal
) -> None:
    order = await bought(engine, paypal, "ann")
    sent = fake.orders[order.provider_ref or ""].body
    assert sent["purchase_units"][0]["custom_id"] == order.id
    assert sent["purchase_units"][0]["amount"] == {"currency_code": "USD", "value": "5.00"}
    approved = fake.approve(order.provider_ref or "", send=False)

    back = await purchases.on_return(engine, ledger, paypal, "ann", order.id)
    assert (back.order.state, back.granted) == ("paid", 500 * C)
    assert len(fake.orders[order.provider_ref or ""].captures) == 1
    assert (await notify(engine, ledger, paypal, fake, approved)).granted == 0  # type: ignore[union-attr]
    completed = fake.events[-1]  # the capture's own PAYMENT.CAPTURE.COMPLETED
    assert completed["event_type"] == "PAYMENT.CAPTURE.COMPLETED"
    assert (await notify(engine, ledger, paypal, fake, completed)).granted == 0  # type: ignore[union-attr]
    assert len(fake.orders[order.provider_ref or ""].captures) == 1
    assert await ledger.balance("ann") == Balance(500 * C, 0, 500 * C)
    [grant] = await ledger.history("ann")
    assert (grant.transfer_id, grant.debit) == (
        f"paypal:{order.provider_ref}",
        "system:paypal_clearing",
    )


async def test_a_pending_capture_waits_for_paypal(
    engine: AsyncEngine, ledger: Ledger, paypal: PayPalOrders, fake: FakePayPal
) -> None:
    cleared, denied = await bought(engine, paypal, "bo"), await bought(engine, paypal, "bo")
    for order in (cleared, denied):
        fake.orders[order.provider_ref or ""].pending_capture = True
        change = await notify(
            engine, ledger, paypal, fake, fake.approve(order.provider_ref or "", send=False)
        )
        assert change is not None
        assert (change.order.state, change.order.provider_status, change.granted) == (
            "pending",
            "processing",
            0,
        )
    ok = await notify(
        engine, ledger, paypal, fake, fake.settle_capture(cleared.provider_ref or "", send=False)
    )
    bad = await notify(
        engine,
        ledger,
        paypal,
        fake,
        fake.settle_capture(denied.provider_ref or "", ok=False, send=False),
    )
    assert ok is not None and (ok.order.state, ok.granted) == ("paid", 500 * C)
    assert bad is not None and (bad.order.state, bad.granted) == ("failed", 0)
    assert await ledger.balance("bo") == Balance(500 * C, 0, 500 * C)


async def test_refunds_and_disputes_take_back_and_a_won_dispute_gives_back(
    engine: AsyncEngine, ledger: Ledger, paypal: PayPalOrders, fake: FakePayPal
) -> None:
    refunded, won, lost = [await bought(engine, paypal, "cy") for _ in range(3)]
    for order in (refunded, won, lost):
        fake.approve(order.provider_ref or "", send=False)
        await purchases.on_return(engine, ledger, paypal, "cy", order.id)
    assert (await ledger.balance("cy")).available == 1500 * C

    part = await purchases.refund(engine, ledger, paypal, refunded.id, 100)  # 1.00 of 5.00
    assert (part.order.state, part.taken) == ("partially_refunded", 100 * C)
    rest = await notify(
        engine, ledger, paypal, fake, fake.refund(refunded.provider_ref or "", "4.00", send=False)
    )
    assert rest is not None and (rest.order.state, rest.taken) == ("refunded", 400 * C)
    for order in (won, lost):
        opened = await notify(
            engine, ledger, paypal, fake, fake.dispute(order.provider_ref or "", send=False)
        )
        assert opened is not None and (opened.order.state, opened.taken) == ("disputed", 500 * C)
    assert (await ledger.balance("cy")).available == 0
    back = await notify(
        engine,
        ledger,
        paypal,
        fake,
        fake.resolve_dispute(won.provider_ref or "", won=True, send=False),
    )
    assert back is not None and (back.order.state, back.returned) == ("dispute_won", 500 * C)
    gone = await notify(
        engine,
        ledger,
        paypal,
        fake,
        fake.resolve_dispute(lost.provider_ref or "", won=False, send=False),
    )
    assert gone is not None and gone.order.state == "dispute_lost"
    assert await ledger.balance("cy") == Balance(500 * C, 0, 500 * C)


async def test_forged_and_stale_notifications_change_nothing(
    engine: AsyncEngine, ledger: Ledger, paypal: PayPalOrders, fake: FakePayPal
) -> None:
    order = await bought(engine, paypal, "di")
    approved = fake.approve(order.provider_ref or "", send=False)
    someone = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    attempts: list[dict] = [{"key": someone}]
    if paypal.verify_by == "local":  # PayPal's own check knows nothing of time or certificate URLs
        attempts += [
            {"when": now_text(-3600)},  # replayed an hour later
            {"cert_url": "https://evil.example/cert.pem"},
            {"cert_url": "http://api.paypal.com/cert.pem"},
        ]
    for signing in attempts:
        with pytest.raises(ForgedNotice):
            await notify(engine, ledger, paypal, fake, approved, **signing)
    body, headers = fake.signed(approved)
    altered = json.loads(body)
    altered["resource"]["status"] = "COMPLETED"
    with pytest.raises(ForgedNotice):
        await purchases.on_notice(
            engine,
            ledger,
            paypal,
            json.dumps(altered).encode(),
            {k.lower(): v for k, v in headers.items()},
        )
    assert (await orders.get(engine, order.id)).state == "pending"
    assert await ledger.balance("di") == Balance(0, 0, 0)


async def test_paypal_down_during_a_return_changes_nothing_and_a_retry_completes(
    engine: AsyncEngine, ledger: Ledger, paypal: PayPalOrders, fake: FakePayPal
) -> None:
    order = await bought(engine, paypal, "ed")
    fake.approve(order.provider_ref or "", send=False)
    fake.down = True
    with pytest.raises(ProviderDown):
        await purchases.on_return(engine, ledger, paypal, "ed", order.id)
    fake.down = False
    assert (await orders.get(engine, order.id)).state == "pending"
    report = await purchases.reconcile(engine, ledger, {"paypal": paypal})
    assert [c.order.state for c in report.changed] == ["paid"] and report.drift == []
    assert await ledger.balance("ed") == Balance(500 * C, 0, 500 * C)

"""Buying credits through Stripe Checkout (the official SDK against a loopback Stripe), on SQLite
and PostgreSQL: card and delayed payments, refunds and disputes from either side, forged and
replayed notifications, a checkout that does not match its order, Stripe down; every story checked
against balances, orders and `verify` (the `ledger` fixture verifies after each test)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.errors import OwesCredits
from credits.ledger import UNITS_PER_CREDIT, Balance
from credits.store import Ledger
from payments import orders, purchases, report
from payments.errors import ForgedNotice, NotRefundable, ProviderDown, UnknownOrder
from payments.inbox import Inbox
from payments.packs import Pack
from payments.provider import ReturnUrls
from payments.stripe import StripeCheckout
from tests.fakes.stripe_server import FakeStripe

SECRET = "whsec_test_secret"
STARTER = Pack("starter", "Starter", "usd", 500, 500)  # 500 credits for 5.00 USD
LARGE = Pack("large", "Large", "usd", 5000, 5000, bonus=1000)
URLS = ReturnUrls("http://app.test/payments/stripe/return?order=x", "http://app.test/")
C = UNITS_PER_CREDIT


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    made = FakeStripe(SECRET).start()
    yield made
    made.stop()


@pytest.fixture
def stripe(fake: FakeStripe) -> StripeCheckout:
    fake.down = False
    return StripeCheckout(fake.api_key, SECRET, api_base=fake.url)


async def bought(
    engine: AsyncEngine, stripe: StripeCheckout, who: str, pack: Pack = STARTER
) -> orders.Order:
    order, checkout = await purchases.start(engine, stripe, pack, who, URLS)
    assert checkout.url.endswith(f"/checkout/{checkout.ref}")
    assert order.state == "pending" and order.provider_ref == checkout.ref
    return order


async def notify(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe, event: dict
) -> purchases.Change | None:
    body, headers = fake.signed(event)
    return await purchases.on_notice(
        engine, ledger, stripe, body, {k.lower(): v for k, v in headers.items()}
    )


async def test_a_card_payment_credits_the_pack_once_whichever_path_comes_first(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    order = await bought(engine, stripe, "ann")
    session = fake.sessions[order.provider_ref or ""]
    assert session.params["client_reference_id"] == order.id
    assert session.params["payment_intent_data"]["metadata"] == {"order": order.id}
    assert (
        session.amount == 500 and session.params["line_items"][0]["price_data"]["currency"] == "usd"
    )

    completed = fake.pay(session.id, send=False)
    back = await purchases.on_return(engine, ledger, stripe, "ann", order.id)
    assert (back.was, back.order.state, back.granted) == ("pending", "paid", 500 * C)
    assert back.order.receipt_url and back.order.payment_ref == session.payment_intent
    late = await notify(engine, ledger, stripe, fake, completed)
    assert late is not None and late.granted == 0 and not late.news
    again = await notify(engine, ledger, stripe, fake, completed)
    assert again is None  # applied before: nothing is done again
    assert await ledger.balance("ann") == Balance(500 * C, 0, 500 * C)
    [grant] = await ledger.history("ann")
    assert (grant.transfer_id, grant.debit, grant.code) == (
        f"stripe:{session.id}",
        "system:stripe_clearing",
        "purchase",
    )


async def test_a_delayed_payment_is_processing_until_it_clears_or_fails(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    cleared, failed = await bought(engine, stripe, "bo"), await bought(engine, stripe, "bo")
    for order in (cleared, failed):
        change = await notify(
            engine,
            ledger,
            stripe,
            fake,
            fake.pay(order.provider_ref or "", delayed=True, send=False),
        )
        assert change is not None
        assert (change.order.state, change.order.provider_status, change.granted) == (
            "pending",
            "processing",
            0,
        )
    assert await ledger.balance("bo") == Balance(0, 0, 0)
    back = await purchases.on_return(engine, ledger, stripe, "bo", cleared.id)
    assert back.order.provider_status == "processing" and not back.news  # told once already
    ok = await notify(
        engine, ledger, stripe, fake, fake.clear(cleared.provider_ref or "", send=False)
    )
    bad = await notify(
        engine, ledger, stripe, fake, fake.clear(failed.provider_ref or "", ok=False, send=False)
    )
    assert ok is not None and (ok.order.state, ok.granted) == ("paid", 500 * C)
    assert bad is not None and (bad.order.state, bad.granted) == ("failed", 0)
    assert await ledger.balance("bo") == Balance(500 * C, 0, 500 * C)


async def test_an_abandoned_checkout_expires_and_a_refund_of_it_is_refused(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    order = await bought(engine, stripe, "cy")
    change = await notify(
        engine, ledger, stripe, fake, fake.expire(order.provider_ref or "", send=False)
    )
    assert change is not None and change.order.state == "expired"
    with pytest.raises(NotRefundable):
        await purchases.refund(engine, ledger, stripe, order.id)
    assert await ledger.balance("cy") == Balance(0, 0, 0)


async def test_refunds_take_back_their_share_and_a_full_refund_takes_it_all(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    """Di bought the large pack (6,000 credits with its bonus, for 50.00). An administrator
    refunds 12.50 (a quarter: 1,500 credits), then Stripe's dashboard refunds 20.00 more (2,400),
    then the administrator refunds the rest: everything is taken back, once each."""
    order = await bought(engine, stripe, "di", LARGE)
    fake.pay(order.provider_ref or "", send=False)
    await purchases.on_return(engine, ledger, stripe, "di", order.id)
    assert (await ledger.balance("di")).available == 6000 * C

    quarter = await purchases.refund(engine, ledger, stripe, order.id, 1250)
    assert (quarter.order.state, quarter.taken) == ("partially_refunded", 1500 * C)
    dashboard = await notify(
        engine, ledger, stripe, fake, fake.refund(order.provider_ref or "", 2000, send=False)
    )
    assert dashboard is not None and dashboard.taken == 2400 * C
    assert (await ledger.balance("di")).available == 2100 * C
    rest = await purchases.refund(engine, ledger, stripe, order.id)
    assert (rest.order.state, rest.order.refunded_minor, rest.taken) == ("refunded", 5000, 2100 * C)
    assert await ledger.balance("di") == Balance(0, 0, 0)
    with pytest.raises(NotRefundable):
        await purchases.refund(engine, ledger, stripe, order.id, 1)
    for event in fake.events[-4:]:  # every refund event again: nothing more is taken
        await notify(engine, ledger, stripe, fake, event)
    assert await ledger.balance("di") == Balance(0, 0, 0)
    codes = [t.code for t in await ledger.history("di")]
    assert codes.count("refund") == 3 and codes.count("purchase") == 1


async def test_a_refund_after_the_credits_were_spent_leaves_them_owed_until_the_next_top_up(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    first = await bought(engine, stripe, "ed")
    fake.pay(first.provider_ref or "", send=False)
    await purchases.on_return(engine, ledger, stripe, "ed", first.id)
    await ledger.reserve("ed", 400 * C, "turn:ed:1", 60)
    await ledger.settle("turn:ed:1", 400 * C)

    refunded = await notify(
        engine, ledger, stripe, fake, fake.refund(first.provider_ref or "", 500, send=False)
    )
    assert refunded is not None and refunded.order.state == "refunded"
    assert await ledger.balance("ed") == Balance(0, 0, 0, owed=400 * C)
    with pytest.raises(OwesCredits):
        await ledger.reserve("ed", 1, "turn:ed:2", 60)

    second = await bought(engine, stripe, "ed")
    fake.pay(second.provider_ref or "", send=False)
    paid = await purchases.on_return(engine, ledger, stripe, "ed", second.id)
    assert (paid.granted, paid.covered) == (500 * C, 400 * C)
    assert await ledger.balance("ed") == Balance(100 * C, 0, 100 * C, owed=0)


async def test_a_dispute_takes_the_credits_back_and_a_won_one_gives_them_back(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    lost, won = await bought(engine, stripe, "fay"), await bought(engine, stripe, "fay")
    for order in (lost, won):
        fake.pay(order.provider_ref or "", send=False)
        await purchases.on_return(engine, ledger, stripe, "fay", order.id)
    assert (await ledger.balance("fay")).available == 1000 * C

    for order in (lost, won):
        opened = await notify(
            engine, ledger, stripe, fake, fake.dispute(order.provider_ref or "", send=False)
        )
        assert opened is not None and (opened.order.state, opened.taken) == ("disputed", 500 * C)
    assert (await ledger.balance("fay")).available == 0
    closed = await notify(
        engine,
        ledger,
        stripe,
        fake,
        fake.close_dispute(lost.provider_ref or "", won=False, send=False),
    )
    assert closed is not None and (closed.order.state, closed.taken, closed.returned) == (
        "dispute_lost",
        0,
        0,
    )
    back = await notify(
        engine,
        ledger,
        stripe,
        fake,
        fake.close_dispute(won.provider_ref or "", won=True, send=False),
    )
    assert back is not None and (back.order.state, back.returned) == ("dispute_won", 500 * C)
    assert await ledger.balance("fay") == Balance(500 * C, 0, 500 * C)


async def test_forged_stale_and_foreign_notifications_change_nothing(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    order = await bought(engine, stripe, "gus")
    completed = fake.pay(order.provider_ref or "", send=False)
    forged = [
        fake.signed(completed, secret="whsec_someone_else"),
        fake.signed(completed, timestamp=int(time.time()) - 3600),  # replayed an hour later
    ]
    body, headers = fake.signed(completed)
    altered = json.loads(body)
    altered["data"]["object"]["amount_total"] = 1
    forged.append((json.dumps(altered).encode(), headers))  # the body changed under its signature
    forged.append((body, {}))  # no signature at all
    for body, headers in forged:
        with pytest.raises(ForgedNotice):
            await purchases.on_notice(
                engine, ledger, stripe, body, {k.lower(): v for k, v in headers.items()}
            )
    assert (await orders.get(engine, order.id)).state == "pending"
    assert await ledger.balance("gus") == Balance(0, 0, 0)

    other = fake.event("payment_intent.created", {"id": "pi_x", "object": "payment_intent"}, False)
    assert await notify(engine, ledger, stripe, fake, other) is None  # ignored, answered 2xx
    with pytest.raises(UnknownOrder):  # a return naming another person's order
        await purchases.on_return(engine, ledger, stripe, "mallory", order.id)
    assert await ledger.balance("mallory") == Balance(0, 0, 0)


async def test_a_checkout_whose_amount_differs_from_its_order_is_never_credited(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    order = await bought(engine, stripe, "hal")
    session = fake.sessions[order.provider_ref or ""]
    session.params["line_items"][0]["price_data"]["unit_amount"] = "1"  # paid 0.01 instead
    change = await notify(engine, ledger, stripe, fake, fake.pay(session.id, send=False))
    assert change is not None and change.order.state == "failed"
    assert "charged 1 usd" in (change.order.problem or "")
    assert await ledger.balance("hal") == Balance(0, 0, 0)


async def test_stripe_down_fails_the_checkout_and_refunds_cleanly(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    fake.down = True
    with pytest.raises(ProviderDown):
        await purchases.start(engine, stripe, STARTER, "ivy", URLS)
    [failed] = [
        o
        for o in await orders.since(engine, orders.datetime.min.replace(tzinfo=orders.UTC))
        if o.account == "ivy"
    ]
    assert failed.state == "failed"
    fake.down = False
    order = await bought(engine, stripe, "ivy")
    fake.pay(order.provider_ref or "", send=False)
    await purchases.on_return(engine, ledger, stripe, "ivy", order.id)
    fake.down = True
    with pytest.raises(ProviderDown):
        await purchases.refund(engine, ledger, stripe, order.id)
    fake.down = False
    assert (await orders.get(engine, order.id)).state == "paid"
    assert await ledger.balance("ivy") == Balance(500 * C, 0, 500 * C)


async def test_fifty_fulfilments_at_once_from_every_path_grant_once(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    order = await bought(engine, stripe, "jo")
    completed = fake.pay(order.provider_ref or "", send=False)
    calls = []
    for i in range(50):
        if i % 3 == 0:
            calls.append(notify(engine, ledger, stripe, fake, completed))
        elif i % 3 == 1:
            calls.append(purchases.on_return(engine, ledger, stripe, "jo", order.id))
        else:
            calls.append(purchases.reconcile(engine, ledger, {"stripe": stripe}))
    done = await asyncio.gather(*calls)
    changes = [d for d in done if isinstance(d, purchases.Change)]
    changes += [c for d in done if isinstance(d, purchases.Reconciliation) for c in d.changed]
    assert sum(c.granted for c in changes) == 500 * C
    assert await ledger.balance("jo") == Balance(500 * C, 0, 500 * C)
    assert len(await ledger.history("jo")) == 1


async def test_reconciliation_completes_what_webhooks_missed_and_reports_no_drift(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    paid, expired, open_ = [await bought(engine, stripe, "kay") for _ in range(3)]
    fake.pay(paid.provider_ref or "", send=False)
    fake.expire(expired.provider_ref or "", send=False)
    report = await purchases.reconcile(engine, ledger, {"stripe": stripe})
    states = {c.order.id: c.order.state for c in report.changed}
    assert states[paid.id] == "paid" and states[expired.id] == "expired"
    assert open_.id not in states
    assert report.drift == [] and report.unreachable == []
    assert (await ledger.balance("kay")).available == 500 * C
    again = await purchases.reconcile(engine, ledger, {"stripe": stripe})
    assert again.changed == [] and again.drift == []


async def test_a_notification_stripe_cannot_confirm_yet_is_kept_and_applied_on_a_later_try(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    """The webhook is answered once stored; applying it needs Stripe, which is down: the worker
    keeps it with the error and a later try, and applies it then (and tells the person once)."""
    order = await bought(engine, stripe, "lee")
    completed = fake.pay(order.provider_ref or "", send=False)
    told: list[purchases.Change] = []

    async def tell(change: purchases.Change) -> None:
        told.append(change)

    worker = Inbox(engine, ledger, {"stripe": stripe}, tell)
    body, headers = fake.signed(completed)
    fake.down = True
    notice = await worker.receive("stripe", body, {k.lower(): v for k, v in headers.items()})
    await worker.drain()
    async with engine.connect() as conn:
        kept = (
            await conn.execute(
                text(
                    "SELECT attempts, last_error, applied_at FROM payment_events WHERE event_id = :e"
                ),
                {"e": notice.event_id},
            )
        ).one()
    assert kept.attempts == 1 and "Stripe failed" in kept.last_error and kept.applied_at is None
    worker._task = asyncio.create_task(asyncio.sleep(3600))  # as if started, for its health
    health = worker.health()
    assert health.ok and f"1 waiting to be tried again (such as stripe {notice.event_id}" in (
        health.detail
    )
    assert await ledger.balance("lee") == Balance(0, 0, 0)

    fake.down = False
    await worker.drain()  # not due yet: nothing happens
    assert await ledger.balance("lee") == Balance(0, 0, 0)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE payment_events SET next_try_at = :now WHERE event_id = :e"),
            {"now": datetime.now(UTC), "e": notice.event_id},
        )
    await worker.drain()
    await worker.drain()
    assert await ledger.balance("lee") == Balance(500 * C, 0, 500 * C)
    assert [c.granted for c in told] == [500 * C]
    assert worker.health().detail == "applying notifications"
    worker._task.cancel()


async def test_the_revenue_report_counts_paid_refunded_disputed_and_owed(
    engine: AsyncEngine, ledger: Ledger, stripe: StripeCheckout, fake: FakeStripe
) -> None:
    kept, refunded, disputed = [await bought(engine, stripe, "mo") for _ in range(3)]
    for order in (kept, refunded, disputed):
        fake.pay(order.provider_ref or "", send=False)
        await purchases.on_return(engine, ledger, stripe, "mo", order.id)
    await ledger.reserve("mo", 1500 * C, "turn:mo", 60)
    await ledger.settle("turn:mo", 1500 * C)  # all spent
    await purchases.refund(engine, ledger, stripe, refunded.id, 200)
    await notify(
        engine, ledger, stripe, fake, fake.dispute(disputed.provider_ref or "", send=False)
    )
    found = await report.revenue(engine, ledger, days=1)
    [(day, provider, currency)] = found.by_day
    assert (provider, currency) == ("stripe", "usd") and day == datetime.now(UTC).strftime(
        "%Y-%m-%d"
    )
    assert found.by_day[day, "stripe", "usd"] == [3, 1500, 200]
    assert [o.id for o in found.refunded] == [refunded.id]
    assert [o.id for o in found.disputed] == [disputed.id]
    assert found.owed == {"mo": 700 * C}  # 200 refunded + 500 disputed, all spent
    text = "\n".join(found.lines())
    assert "mo: 700 credits" in text and "15.00 USD" in text

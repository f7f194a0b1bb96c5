"""Crypto top-ups on web3.py's in-process tester chain (SQLite and PostgreSQL): a pack paid in the
stablecoin or the native coin from a bound wallet, found by the watcher, credited after its
confirmations and only then, once, whoever reports it; and every payment that must not buy
credits (a look-alike token, another recipient, a failed transaction, a wallet that is not the
person's, the wrong chain, too few confirmations, a replay) refused with a reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.ledger import UNITS_PER_CREDIT
from credits.store import Ledger
from payments import crypto, onchain, orders, report
from payments.chain import Chain
from payments.crypto import CryptoPayments
from payments.errors import ForgedNotice, NotRefundable
from payments.onchain import NotClaimed
from payments.provider import PaymentProvider
from payments.quotes import NoQuote
from tests.crypto.evm import Evm
from tests.crypto.shop import ETH_USD, PACK, UNITS, Shop, open_shop


@pytest.fixture
async def shop(engine: AsyncEngine, ledger: Ledger) -> AsyncIterator[Shop]:
    yield await open_shop(Evm.tester(), engine, ledger)


async def confirm(shop: Shop, blocks: int) -> None:
    """Mine `blocks` more blocks and let the watcher look."""
    await shop.evm.mine(blocks)
    assert shop.watcher is not None
    await shop.watcher.poll()


async def test_a_stablecoin_payment_is_credited_after_its_confirmations(shop: Shop) -> None:
    ann = await shop.customer("ann@example.com")
    quote = await shop.sell("ann@example.com")
    assert quote.amount == 5_000_000  # $5.00 at face value, in USDC's 6 decimals
    assert quote.link == (
        f"ethereum:{Chain.checksum(shop.config.token.token)}@{shop.config.chain_id}/transfer"  # type: ignore[union-attr]
        f"?address={Chain.checksum(shop.receiver.address)}&uint256=5000000"
    )
    shop.watcher = shop.watch()
    tx = await shop.pay(ann, quote)
    await shop.watcher.poll()  # mined: 1 of 3
    paid = await shop.payment(tx)
    assert paid is not None and (paid.state, paid.order_id) == ("confirming", quote.order_id)
    assert (await shop.order(quote)).status == "processing"
    assert (await shop.ledger.balance("ann@example.com")).posted == 0
    await confirm(shop, 1)  # 2 of 3: still nothing
    assert (await shop.ledger.balance("ann@example.com")).available == 0
    await confirm(shop, 1)  # 3 of 3
    assert (await shop.ledger.balance("ann@example.com")).available == UNITS
    order = await shop.order(quote)
    assert (order.state, order.payment_ref, order.credited) == ("paid", tx, UNITS)
    assert order.receipt_url == f"https://explorer.example/tx/{tx}"
    key = f"{shop.config.chain_id}:{tx}:0"
    assert order.transfer_id == f"crypto:{key}"
    [grant] = await shop.ledger.history("ann@example.com")
    assert (grant.transfer_id, grant.debit, grant.code) == (
        f"crypto:{key}", "system:crypto_clearing", "purchase",
    )  # fmt: skip
    assert shop.said("ann@example.com") == [
        "Payment seen: 5 USDC",
        "Payment seen, 1 of 3 confirmations",
        "Payment seen, 2 of 3 confirmations",
        "Payment received: +200 credits",
    ]
    await confirm(shop, 5)  # later polls change nothing
    assert len(await shop.ledger.history("ann@example.com")) == 1
    payment = await shop.crypto.payment(quote.order_id)
    assert (payment.status, payment.payment_ref, payment.amount_minor) == ("paid", tx, 500)


async def test_the_native_coin_is_priced_by_the_feed_and_locked_in_the_quote(shop: Shop) -> None:
    ann = await shop.customer("ann@example.com")
    quote = await shop.sell("ann@example.com", "native")
    assert quote.rate == Decimal("2000")
    assert quote.amount == 2_500_000_000_000_000  # $5.00 / $2,000 = 0.0025 ETH
    assert quote.link.endswith(f"@{shop.config.chain_id}?value=2500000000000000")
    await shop.evm.set_price(shop.feed, ETH_USD * 2, await shop.evm.now())  # the price moves
    shop.watcher = shop.watch()
    tx = await shop.pay(ann, quote)
    await confirm(shop, 2)
    paid = await shop.payment(tx, -1)
    assert paid is not None and paid.state == "credited"
    assert (await shop.ledger.balance("ann@example.com")).available == UNITS  # as quoted
    assert (await shop.sell("ann@example.com", "native")).amount == 1_250_000_000_000_000


async def test_a_stale_or_broken_price_is_refused(shop: Shop) -> None:
    now = await shop.evm.now()
    await shop.evm.set_price(shop.feed, ETH_USD, now - 2 * 3600)
    with pytest.raises(NoQuote, match="minutes old"):
        await shop.sell("ann@example.com", "native")
    await shop.evm.set_price(shop.feed, 0, now)
    with pytest.raises(NoQuote, match="no valid answer"):
        await shop.sell("ann@example.com", "native")
    await shop.evm.set_price(shop.feed, ETH_USD, now, behind=1)  # carried over from a past round
    with pytest.raises(NoQuote, match="no valid answer"):
        await shop.sell("ann@example.com", "native")
    at_a_fixed_rate = replace(shop.config, price_feed=None, fixed_rate=Decimal(2500))
    fixed = CryptoPayments(shop.engine, shop.chain, at_a_fixed_rate)
    quote = await crypto.sell(shop.engine, fixed, PACK, "ann@example.com", "native")
    assert quote.amount == 2_000_000_000_000_000  # $5.00 / $2,500
    made = await orders.of_account(shop.engine, "ann@example.com")
    assert [o.state for o in made].count("failed") == 3  # each refused quote's order, unpayable


async def test_over_and_under_payments_buy_in_proportion(shop: Shop) -> None:
    ann = await shop.customer("ann@example.com")
    shop.watcher = shop.watch()
    over, under = await shop.sell("ann@example.com"), await shop.sell("ann@example.com")
    await shop.pay(ann, over, 7_500_000)  # $7.50 for the $5.00 quote (the oldest open one)
    await shop.pay(ann, under, 2_500_000)  # $2.50 for the next
    await confirm(shop, 3)
    assert (await shop.ledger.balance("ann@example.com")).available == UNITS * 3 // 2 + UNITS // 2
    assert (await shop.order(over)).credited == UNITS * 3 // 2
    assert (await shop.order(under)).credited == UNITS // 2
    sold = await report.revenue(shop.engine, shop.ledger)
    [(n, received, _)] = [v for (_, p, _), v in sold.by_day.items() if p == "crypto"]
    assert (n, received) == (2, 750 + 250)  # what was paid: $7.50 and $2.50


async def test_an_underpayment_buys_nothing_where_the_setting_says_so(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    shop = await open_shop(Evm.tester(), engine, ledger, underpayment="none")
    ann = await shop.customer("ann@example.com")
    shop.watcher = shop.watch()
    quote = await shop.sell("ann@example.com")
    tx = await shop.pay(ann, quote, 4_990_000)
    await confirm(shop, 3)
    paid = await shop.payment(tx)
    assert paid is not None and paid.state == "underpaid"
    assert (await shop.order(quote)).state == "failed"
    assert (await shop.ledger.balance("ann@example.com")).available == 0
    assert "Payment too small: nothing credited" in shop.said("ann@example.com")


async def test_transfers_that_must_not_credit_are_refused_with_a_reason(shop: Shop) -> None:
    ann = await shop.customer("ann@example.com")
    bob = await shop.customer("bob@example.com")
    stranger = await shop.evm.person()
    await shop.evm.mint(shop.token, stranger.address, 10_000_000)
    shop.watcher = shop.watch()
    quote = await shop.sell("ann@example.com")
    lookalike = await shop.evm.pay_token(ann, shop.lookalike, shop.receiver.address, quote.amount)
    elsewhere = await shop.evm.pay_token(ann, shop.token, bob.address, quote.amount)
    failed = await shop.evm.pay_token(ann, shop.token, shop.receiver.address, 10**12)  # too much
    unbound = await shop.evm.pay_token(stranger, shop.token, shop.receiver.address, quote.amount)
    bobs = await shop.evm.pay_token(bob, shop.token, shop.receiver.address, quote.amount)
    await confirm(shop, 3)

    async def claim(tx: str, account: str = "ann@example.com") -> list[onchain.News]:
        return await onchain.claim(shop.engine, shop.ledger, shop.chain, shop.config, account, tx)

    with pytest.raises(NotClaimed, match="paid nothing to"):
        await claim(lookalike)  # a Transfer log, from a contract that is not the token
    with pytest.raises(NotClaimed, match="paid nothing to"):
        await claim(elsewhere)
    with pytest.raises(NotClaimed, match="failed"):
        await claim(failed)
    with pytest.raises(NotClaimed, match="bound to no account"):
        await claim(unbound)
    with pytest.raises(NotClaimed, match="bound to another account"):
        await claim(bobs)
    with pytest.raises(NotClaimed, match="no transaction"):
        await claim("0x" + "ab" * 32)  # not on this chain (another network's hash)
    with pytest.raises(NotClaimed, match="not a transaction hash"):
        await claim("0x1234")
    assert (await shop.ledger.balance("ann@example.com")).available == 0
    assert await shop.payment(lookalike) is None
    stray = await shop.payment(unbound)
    assert stray is not None and (stray.state, stray.account) == ("unattributed", None)
    bob_paid = await shop.payment(bobs)  # Bob had no quote open: his, kept for an administrator
    assert bob_paid is not None and (bob_paid.state, bob_paid.account) == (
        "unmatched",
        "bob@example.com",
    )
    assert (await shop.order(quote)).state == "pending"


async def test_a_transaction_credits_once_whoever_reports_it_and_however_often(
    shop: Shop,
) -> None:
    ann = await shop.customer("ann@example.com")
    await shop.customer("bob@example.com")
    quote = await shop.sell("ann@example.com")
    tx = await shop.pay(ann, quote)
    await shop.evm.mine(3)
    shop.watcher = shop.watch()

    async def claim(account: str) -> object:
        try:
            return await onchain.claim(
                shop.engine, shop.ledger, shop.chain, shop.config, account, tx
            )
        except NotClaimed as refused:
            return refused

    outcomes = await asyncio.gather(
        shop.watcher.poll(), *(claim("ann@example.com") for _ in range(10)),
        *(claim("bob@example.com") for _ in range(5)),
    )  # fmt: skip
    assert all(isinstance(o, NotClaimed) for o in outcomes[11:])
    assert (await shop.ledger.balance("ann@example.com")).available == UNITS
    assert (await shop.ledger.balance("bob@example.com")).available == 0
    assert len(await shop.ledger.history("ann@example.com")) == 1
    returned = [n for o in outcomes[1:11] if isinstance(o, list) for n in o]
    toasts = shop.said("ann@example.com") + [n.toast for n in returned]
    received = [t for t in toasts if t.startswith("Payment received")]
    assert received == ["Payment received: +200 credits"]  # told once, by whoever credited
    again = await onchain.claim(shop.engine, shop.ledger, shop.chain, shop.config,
                                "ann@example.com", tx)  # fmt: skip
    assert [n.toast for n in again] == ["Already credited"]


async def test_a_pasted_hash_credits_a_payment_the_watcher_has_not_seen(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    """The watcher started after the payment was mined (its first run starts at the head)."""
    shop = await open_shop(Evm.tester(), engine, ledger, start_block=None)
    ann = await shop.customer("ann@example.com")
    quote = await shop.sell("ann@example.com")
    tx = await shop.pay(ann, quote)
    await shop.evm.mine(3)
    shop.watcher = shop.watch()
    await shop.watcher.poll()
    assert await shop.payment(tx) is None
    news = await onchain.claim(shop.engine, shop.ledger, shop.chain, shop.config,
                               "ann@example.com", tx.upper().replace("0X", "0x"))  # fmt: skip
    assert "Payment received: +200 credits" in [n.toast for n in news]
    assert (await shop.ledger.balance("ann@example.com")).available == UNITS


async def test_a_wallet_bound_after_paying_can_claim_its_payment(shop: Shop) -> None:
    payer = await shop.evm.person()
    await shop.evm.mint(shop.token, payer.address, 10_000_000)
    quote = await shop.sell("ann@example.com")
    shop.watcher = shop.watch()
    tx = await shop.pay(payer, quote)
    await confirm(shop, 3)
    assert (await shop.payment(tx)).state == "unattributed"  # type: ignore[union-attr]
    await shop.bind("ann@example.com", payer)
    news = await onchain.claim(shop.engine, shop.ledger, shop.chain, shop.config,
                               "ann@example.com", tx)  # fmt: skip
    assert "Payment received: +200 credits" in [n.toast for n in news]
    assert (await shop.order(quote)).state == "paid"


async def test_a_payment_after_its_quote_expired_waits_for_an_administrator(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    from datetime import timedelta

    shop = await open_shop(Evm.tester(), engine, ledger, quote_ttl=timedelta(seconds=0))
    ann = await shop.customer("ann@example.com")
    quote = await shop.sell("ann@example.com")
    await asyncio.sleep(1.1)  # block times are whole seconds
    shop.watcher = shop.watch()
    await shop.watcher.poll()
    assert (await shop.order(quote)).state == "expired"
    tx = await shop.pay(ann, quote)
    await confirm(shop, 3)
    paid = await shop.payment(tx)
    assert paid is not None and (paid.state, paid.order_id) == ("unmatched", None)
    assert (await shop.ledger.balance("ann@example.com")).available == 0
    assert "Payment of 5 USDC received without an open order" in shop.said("ann@example.com")


async def test_the_adapter_answers_the_provider_interface(shop: Shop) -> None:
    adapter: PaymentProvider = shop.crypto  # checked by mypy too
    quote = await shop.sell("ann@example.com")
    assert (await adapter.payment(quote.order_id)).status == "open"
    with pytest.raises(ForgedNotice, match="no notifications"):
        await adapter.verify(b"{}", {})
    with pytest.raises(NotRefundable, match="receiving wallet"):
        await adapter.refund(await adapter.payment(quote.order_id), 500, "k")
    assert quote.order_id in await adapter.recent(quote.created_at)


async def test_the_wrong_chain_is_refused_at_startup(shop: Shop) -> None:
    wrong = Chain(shop.evm.provider, shop.config.chain_id + 1)
    with pytest.raises(ValueError, match="serves chain"):
        await wrong.check()


async def test_an_administrator_credits_an_unmatched_payment_once(shop: Shop) -> None:
    ann = await shop.customer("ann@example.com")
    shop.watcher = shop.watch()
    tx = await shop.evm.pay_token(ann, shop.token, shop.receiver.address, 3_000_000)  # no quote
    await confirm(shop, 3)
    key = f"{shop.config.chain_id}:{tx}:0"
    assert [p.key for p in await onchain.in_states(shop.engine, *onchain.NEEDS_ADMIN)] == [key]
    done = await onchain.credit_by_hand(shop.engine, shop.ledger, key, 120 * UNITS_PER_CREDIT, "t")
    assert (done.state, done.credited) == ("credited", 120 * UNITS_PER_CREDIT)
    with pytest.raises(NotClaimed, match="is credited"):
        await onchain.credit_by_hand(shop.engine, shop.ledger, key, 120 * UNITS_PER_CREDIT, "t")
    with pytest.raises(NotClaimed, match="is not <chain id>"):
        await onchain.credit_by_hand(shop.engine, shop.ledger, "nonsense", 1, "t")
    [grant] = await shop.ledger.history("ann@example.com")
    assert grant.transfer_id == f"crypto:{key}" and grant.amount == 120 * UNITS_PER_CREDIT
    assert await onchain.in_states(shop.engine, *onchain.NEEDS_ADMIN) == []


async def test_each_transfer_log_of_one_transaction_is_a_payment_of_its_own(shop: Shop) -> None:
    """One transaction with two Transfer logs to us: two payments, told apart by log index."""
    ann = await shop.customer("ann@example.com")
    first, second = await shop.sell("ann@example.com"), await shop.sell("ann@example.com")
    shop.watcher = shop.watch()
    tx = await shop.evm.call_token(
        ann, shop.token, "batchTransfer", [Chain.checksum(shop.receiver.address), 5_000_000, 2]
    )
    await confirm(shop, 3)
    paid = [await shop.payment(tx, i) for i in (0, 1)]
    assert [p.state for p in paid if p] == ["credited", "credited"]
    assert {p.order_id for p in paid if p} == {first.order_id, second.order_id}
    grants = {t.transfer_id for t in await shop.ledger.history("ann@example.com")}
    chain = shop.config.chain_id
    assert grants == {f"crypto:{chain}:{tx}:0", f"crypto:{chain}:{tx}:1"}


async def test_a_claim_cancelled_at_any_moment_is_completed_once_by_the_watcher(
    shop: Shop,
) -> None:
    """Stop pressed while /paid credits: whatever the claim had done, the watcher finishes it,
    granting once and telling once."""
    ann = await shop.customer("ann@example.com")
    shop.watcher = shop.watch()
    sent = []
    for delay_ms in range(0, 16, 2):
        quote = await shop.sell("ann@example.com")
        tx = await shop.pay(ann, quote)
        await shop.evm.mine(3)
        claim = asyncio.create_task(onchain.claim(
            shop.engine, shop.ledger, shop.chain, shop.config, "ann@example.com", tx))  # fmt: skip
        await asyncio.sleep(delay_ms / 1000)
        claim.cancel()
        await asyncio.gather(claim, return_exceptions=True)
        sent.append(tx)
    await shop.watcher.poll()
    for tx in sent:
        paid = await shop.payment(tx)
        assert paid is not None and paid.state == "credited", (tx, paid)
    grants = [t for t in await shop.ledger.history("ann@example.com") if t.code == "purchase"]
    assert len(grants) == len(sent)
    assert (await shop.ledger.balance("ann@example.com")).available == len(sent) * UNITS

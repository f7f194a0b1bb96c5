"""The chain watcher on the tester chain and on anvil (SQLite and PostgreSQL): reorgs below and
above the confirmation depth (anvil's snapshot and revert), a payment moved by a reorg, a restart
that resumes from the cursor, one replica at a time per chain, and a node that goes down and comes
back: nothing credited early, nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.store import Ledger
from payments.chain import Chain
from payments.errors import ProviderDown
from payments.quotes import Quote
from payments.watcher import cursors
from tests.crypto.anvil import running_anvil
from tests.crypto.evm import Evm
from tests.crypto.shop import UNITS, Shop, open_shop

T = TypeVar("T")


@pytest.fixture(scope="module")
def anvil() -> Iterator[str]:
    with running_anvil() as url:
        yield url


@pytest.fixture(params=["tester", "anvil"])
async def node(request: pytest.FixtureRequest) -> AsyncIterator[Evm]:
    """The reorg stories run on web3.py's tester chain and on anvil, a real node."""
    if request.param == "tester":
        yield Evm.tester()
        return
    evm = Evm.at(request.getfixturevalue("anvil"))
    yield evm
    await evm.close()


@pytest.fixture
async def shop(engine: AsyncEngine, ledger: Ledger) -> AsyncIterator[Shop]:
    yield await open_shop(Evm.tester(), engine, ledger)


@pytest.fixture
async def shop_on(node: Evm, engine: AsyncEngine, ledger: Ledger) -> AsyncIterator[Shop]:
    yield await open_shop(node, engine, ledger)


async def poll(shop: Shop, blocks: int = 0) -> None:
    if blocks:
        await shop.evm.mine(blocks)
    assert shop.watcher is not None
    await shop.watcher.poll()


async def fork(shop: Shop, snapshot: Any) -> None:
    """The chain reorganises back to `snapshot`: a different block takes the place of the next."""
    await shop.evm.revert(snapshot)
    other = await shop.evm.person()
    await shop.evm.send_native_from(shop.evm.funder, other.address, 12345)


async def paid_after_snapshot(shop: Shop) -> tuple[Quote, Any, str]:
    """Ann's quote, a snapshot of the chain taken just before she pays it, and her payment."""
    ann = await shop.customer("ann@example.com")
    quote = await shop.sell("ann@example.com")
    shop.watcher = shop.watch()
    await poll(shop)
    before = await shop.evm.snapshot()
    return quote, before, await shop.pay(ann, quote)


async def test_a_reorg_before_the_confirmations_credits_nothing(shop_on: Shop) -> None:
    shop = shop_on
    quote, before, tx = await paid_after_snapshot(shop)
    await poll(shop, 1)  # 2 of 3
    await fork(shop, before)
    await poll(shop, 3)  # the new chain is longer; the payment is not on it
    paid = await shop.payment(tx)
    assert paid is not None and (paid.state, paid.order_id) == ("dropped", None)
    assert (await shop.ledger.balance("ann@example.com")).posted == 0
    order = await shop.order(quote)
    assert (order.state, order.provider_status) == ("pending", None)  # can still be paid
    assert "Payment left the chain: nothing credited" in shop.said("ann@example.com")


async def test_a_payment_moved_by_a_reorg_counts_its_confirmations_again(shop_on: Shop) -> None:
    shop = shop_on
    quote, before, tx = await paid_after_snapshot(shop)
    raw = shop.evm.last_raw
    await poll(shop, 1)
    first = await shop.payment(tx)
    await fork(shop, before)
    assert await shop.evm.resend(raw) == tx  # the same transaction, in another block
    await poll(shop)
    moved = await shop.payment(tx)
    assert moved is not None and first is not None
    assert moved.state == "confirming" and moved.block_hash != first.block_hash
    assert (await shop.ledger.balance("ann@example.com")).posted == 0
    await poll(shop, 2)
    assert (await shop.ledger.balance("ann@example.com")).available == UNITS
    assert (await shop.order(quote)).state == "paid"


async def test_a_credited_payment_that_leaves_the_chain_is_reported_not_hidden(
    shop_on: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    shop = shop_on
    quote, before, tx = await paid_after_snapshot(shop)
    await poll(shop, 3)
    assert (await shop.ledger.balance("ann@example.com")).available == UNITS
    await fork(shop, before)
    with caplog.at_level(logging.ERROR, logger="payments"):
        await poll(shop, 6)
    paid = await shop.payment(tx)
    assert (
        paid is not None and paid.state == "vanished" and "left the chain" in (paid.problem or "")
    )
    assert any("ADMIN" in r.getMessage() and tx in r.getMessage() for r in caplog.records)
    assert (await shop.ledger.balance("ann@example.com")).available == UNITS  # not taken silently
    assert (await shop.order(quote)).state == "paid"


async def test_a_restarted_watcher_resumes_where_it_stopped(shop: Shop) -> None:
    ann = await shop.customer("ann@example.com")
    first = shop.watch(name="first")
    await first.poll()
    await first.close()  # the app stops
    quotes = [await shop.sell("ann@example.com") for _ in range(3)]
    sent = [await shop.pay(ann, q) for q in quotes]
    await shop.evm.mine(20)
    shop.watcher = shop.watch(name="second", log_range=7)  # several eth_getLogs ranges
    scanned = await shop.watcher.poll()
    assert scanned == await shop.evm.head() - (first.cursor or 0)
    for tx in sent:
        paid = await shop.payment(tx)
        assert paid is not None and paid.state == "credited"
    assert (await shop.ledger.balance("ann@example.com")).available == 3 * UNITS
    assert await shop.watcher.poll() == 0  # nothing new


async def test_one_replica_at_a_time_watches_a_chain(shop: Shop) -> None:
    ann = await shop.customer("ann@example.com")
    one, two = shop.watch(name="one"), shop.watch(name="two")
    await shop.evm.mine(2)
    assert await one.poll() > 0
    assert await two.poll() == 0 and two.health()["role"] == "standby"
    quote = await shop.sell("ann@example.com")
    tx = await shop.pay(ann, quote)
    await shop.evm.mine(3)
    async with shop.engine.begin() as conn:  # "one" died without giving the lease back
        await conn.execute(
            update(cursors).values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert await two.poll() > 0 and two.health()["role"] == "watching"
    assert await one.poll() == 0
    paid = await shop.payment(tx)
    assert paid is not None and paid.state == "credited"


class FlakyChain(Chain):
    """The chain through a node that can be taken down (every call fails as a refused
    connection does) and brought back."""

    down = False

    async def _ask(self, call: Awaitable[T]) -> T:
        if self.down:
            if isinstance(call, Coroutine):
                call.close()
            raise ProviderDown(f"chain {self.chain_id}: ConnectionError: connection refused")
        return await super()._ask(call)


async def test_the_node_down_the_watcher_waits_and_catches_up(shop: Shop) -> None:
    ann = await shop.customer("ann@example.com")
    node = FlakyChain(shop.evm.provider, shop.config.chain_id)
    shop.chain = node
    shop.watcher = shop.watch()
    shop.watcher.start()
    try:
        quote = await shop.sell("ann@example.com")
        await asyncio.sleep(0.3)
        node.down = True
        tx = await shop.pay(ann, quote)
        await shop.evm.mine(5)
        await asyncio.sleep(0.5)
        health = shop.watcher.health()
        assert health["failures"] >= 2 and "connection refused" in health["last_error"]
        assert await shop.payment(tx) is None
        node.down = False
        for _ in range(100):
            paid = await shop.payment(tx)
            if paid is not None and paid.state == "credited":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"not credited after the node came back: {shop.watcher.health()}")
        assert (await shop.ledger.balance("ann@example.com")).available == UNITS
        assert shop.watcher.health()["failures"] == 0
    finally:
        await shop.watcher.close()


async def test_a_watcher_loop_that_dies_is_started_again(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop.watcher = shop.watch()
    calls = 0
    real = shop.watcher.poll

    async def broken() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug")
        return await real()

    monkeypatch.setattr(shop.watcher, "poll", broken)
    shop.watcher.start()
    try:
        for _ in range(50):
            if shop.watcher.restarts and shop.watcher.cursor is not None:
                break
            await asyncio.sleep(0.1)
        assert shop.watcher.restarts == 1 and shop.watcher.cursor is not None
        assert shop.watcher.health()["ok"]
    finally:
        await shop.watcher.close()


async def test_waiting_for_finality_credits_once_the_finalized_block_includes_it(
    anvil: str, engine: AsyncEngine, ledger: Ledger
) -> None:
    """On anvil the finalized block is 64 behind the head: the confirmations alone are not
    enough when CRYPTO_WAIT_FINALIZED is set."""
    evm = Evm.at(anvil)
    shop = await open_shop(evm, engine, ledger, finalized=True)
    try:
        ann = await shop.customer("ann@example.com")
        quote = await shop.sell("ann@example.com")
        shop.watcher = shop.watch()
        tx = await shop.pay(ann, quote)
        await poll(shop, 10)  # 11 confirmations, far more than 3, but not final
        paid = await shop.payment(tx)
        assert paid is not None and paid.state == "confirming"
        await poll(shop, 64)
        paid = await shop.payment(tx)
        assert paid is not None and paid.state == "credited"
        assert (await shop.ledger.balance("ann@example.com")).available == UNITS
    finally:
        await evm.close()

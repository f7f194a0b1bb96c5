"""Crypto top-ups: from the block that completes a payment's confirmations to the badge of an open
chat, and the watcher catching up on a long stretch of chain. Runs against anvil (a real node,
npm `@foundry-rs/anvil`, pinned in tests/anvil).

Prints `name: value` lines:
  confirmed_to_badge_ms_p50 / _p95  the block completing a stablecoin payment's confirmations
                                    mined, to the person's open chat showing the new balance; the
                                    real app with the watcher's default poll interval (p95 <= 2000)
  watcher_blocks_s                  blocks per second the watcher catches up on: `--blocks`
                                    blocks holding `--transfers` stablecoin payments, all credited
                                    (in process, SQLite; the token's logs only)
  watcher_blocks_s_native           the same with native-coin scanning on (every block read whole)
  watcher_credited                  payments credited by the catch-up, of all sent (all)

Usage: .venv/bin/python bench/crypto.py [--purchases 20] [--blocks 10000] [--transfers 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth import passwords
from credits.ledger import UNITS_PER_CREDIT
from credits.store import Ledger
from payments import crypto, onchain, wallets
from payments.chain import Chain
from payments.crypto import CryptoPayments
from payments.packs import Pack
from payments.quotes import Asset, CryptoConfig
from payments.watcher import Watcher
from storage.engine import create_engine
from storage.migrate import upgrade_async
from tests.crypto.anvil import CHAIN_ID, running_anvil
from tests.crypto.evm import Evm, Person
from tests.e2e.client import ChatSession, login
from tests.e2e.process import app_process, free_port

PASSWORD = "bench-password-long-enough"
BUYER = "buyer@example.com"
PACK = Pack("starter", "Starter", "usd", 500, 500)
CONFIRMATIONS = 3


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    with running_anvil() as url:
        evm = Evm.at(url)
        await evm.setup()
        token = await evm.deploy("Token", "USD Coin", "USDC", 6)
        receiver = await evm.person(eth=0)
        if args.purchases:
            await confirmed_to_badge(evm, token, receiver, url, args.purchases)
        if args.blocks:
            await catch_up(evm, token, receiver, url, args.blocks, args.transfers)


def config_for(token: Any, receiver: Person, native: bool = False) -> CryptoConfig:
    return CryptoConfig(
        chain_id=CHAIN_ID, chain_name="Anvil", recipient=receiver.address,
        native=Asset("native", "ETH", 18, None) if native else None,
        token=Asset("token", "USDC", 6, str(token.address).lower()), currency="usd",
        fixed_rate=None, confirmations=CONFIRMATIONS, quote_ttl=timedelta(hours=2), start_block=0,
    )  # fmt: skip


async def confirmed_to_badge(evm: Evm, token: Any, receiver: Person, url: str, count: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-crypto-"))
    db = f"sqlite+aiosqlite:///{(data_dir / 'app.db').resolve()}"
    await upgrade_async(db)
    engine = create_engine(db)
    await passwords.create(engine, BUYER, PASSWORD)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    overrides = dict(
        ADMIN_EMAIL="admin@example.com", ADMIN_PASSWORD=PASSWORD, LOG_LEVEL="WARNING",
        CHAINLIT_URL=base_url, CRYPTO_RPC_URL=url, CRYPTO_CHAIN_ID=str(CHAIN_ID),
        CRYPTO_RECEIVING_ADDRESS=receiver.address, CRYPTO_TOKEN_ADDRESS=str(token.address),
        CRYPTO_CONFIRMATIONS=str(CONFIRMATIONS), CRYPTO_START_BLOCK="0",
    )  # fmt: skip  # the watcher's poll interval is its default
    chain = Chain.at(url, CHAIN_ID)
    config = config_for(token, receiver)
    seller = CryptoPayments(engine, chain, config)
    buyer = await evm.person()
    await evm.mint(token, buyer.address, 10**15)
    site = wallets.Site(base_url, CHAIN_ID)
    message = (await wallets.challenge(engine, site, BUYER, buyer.address)).text()
    await wallets.bind(engine, chain, site, BUYER, message, buyer.sign(message))
    took = []
    try:
        with app_process(data_dir, port=port, **overrides):
            chat = ChatSession(base_url, await login(base_url, BUYER, PASSWORD))
            await chat.connect()
            await chat.wait_for_badge(0)
            balance = 1000 * UNITS_PER_CREDIT  # the welcome bonus
            for _ in range(count):
                quote = await crypto.sell(engine, seller, PACK, BUYER, "token")
                await evm.pay_token(buyer, token, receiver.address, quote.amount)
                await evm.mine(CONFIRMATIONS - 2)
                # seen by the watcher before the last block, mined at any moment of its interval
                await asyncio.sleep(1.2 + random.random())
                balance += PACK.units
                after = len(chat.events)
                await evm.mine(1)
                started = time.perf_counter()
                await chat.wait_until(
                    lambda events, units=balance: any(
                        n == "element" and d.get("name") == "CreditBadge"
                        and d["props"]["units"] == units
                        for n, d in events
                    ),
                    after,
                    timeout=30,
                )  # fmt: skip
                took.append((time.perf_counter() - started) * 1000)
            await chat.close()
    finally:
        await chain.close()
        await engine.dispose()
    print(f"confirmed_to_badge_ms_p50: {statistics.median(took):.1f}")
    print(f"confirmed_to_badge_ms_p95: {percentile(took, 95):.1f}")


async def catch_up(
    evm: Evm, token: Any, receiver: Person, url: str, blocks: int, transfers: int
) -> None:
    """`transfers` payments from 100 people (each with as many quotes open, made before they pay),
    spread over `blocks` blocks; then a watcher that starts before them catches up, once with the
    token's logs only and once reading every block for native coin too."""
    people = [await evm.person() for _ in range(min(100, transfers))]
    for someone in people:
        await evm.mint(token, someone.address, 10**15)
    start = await evm.head() + 1
    shops = {
        native: await open_shop(url, replace(config_for(token, receiver, native), start_block=start),
                                people, transfers)
        for native in (False, True)
    }  # fmt: skip
    every = max(blocks // max(transfers, 1), 1)
    for i in range(transfers):
        await evm.pay_token(people[i % len(people)], token, receiver.address, 5_000_000)
        await evm.mine(every - 1)
    await evm.mine(max(start + blocks - 1 - await evm.head(), 0) + CONFIRMATIONS)
    scanned = await evm.head() - start + 1
    for native, watcher in shops.items():
        started = time.perf_counter()
        await watcher.poll()
        took = time.perf_counter() - started
        credited = (await onchain.counts(watcher.engine)).get("credited", 0)
        print(f"watcher_blocks_s{'_native' if native else ''}: {scanned / took:.0f}")
        if not native:
            print(f"watcher_credited: {credited}/{transfers}")
        await watcher.chain.close()
        await watcher.ledger.close()
        await watcher.engine.dispose()


async def open_shop(
    url: str, config: CryptoConfig, people: list[Person], transfers: int
) -> Watcher:
    """A database and ledger of their own where `people` have bound their wallets and opened
    their quotes; the watcher that will catch up on them."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-watcher-"))
    db = f"sqlite+aiosqlite:///{(data_dir / 'app.db').resolve()}"
    await upgrade_async(db)
    engine = create_engine(db)
    ledger = Ledger(f"sqlite+aiosqlite:///{data_dir / 'ledger.db'}", data_dir,
                    Ed25519PrivateKey.generate())  # fmt: skip
    await ledger.start()
    chain = Chain.at(url, CHAIN_ID)
    site = wallets.Site("https://bench.example", CHAIN_ID)
    seller = CryptoPayments(engine, chain, config)
    for n, someone in enumerate(people):
        account = f"p{n}@example.com"
        message = (await wallets.challenge(engine, site, account, someone.address)).text()
        await wallets.bind(engine, chain, site, account, message, someone.sign(message))
        for _ in range(transfers // len(people)):
            await crypto.sell(engine, seller, PACK, account, "token")

    async def quiet(news: onchain.News) -> None:
        return None

    return Watcher(engine, ledger, chain, config, quiet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--purchases", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--transfers", type=int, default=1000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

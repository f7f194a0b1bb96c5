"""A shop that sells credits for crypto on a test chain: the chain with a stablecoin, a look-alike
of it and a price feed deployed, the receiving wallet, the adapter and its watcher, and what the
watcher told people."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from credits.ledger import UNITS_PER_CREDIT
from credits.store import Ledger
from payments import crypto, onchain, orders, wallets
from payments.chain import Chain
from payments.crypto import CryptoPayments
from payments.onchain import News
from payments.packs import Pack
from payments.quotes import Asset, CryptoConfig, Quote
from payments.watcher import Watcher
from tests.crypto.evm import Evm, Person

PACK = Pack("starter", "Starter", "usd", 500, 200)  # 200 credits for $5.00
UNITS = 200 * UNITS_PER_CREDIT
SITE_URI = "https://chat.example.com"
ETH_USD = 2000_00000000  # $2,000.00000000, as an 8-decimal feed answers


@dataclass
class Shop:
    evm: Evm
    engine: AsyncEngine
    ledger: Ledger
    chain: Chain
    config: CryptoConfig
    token: Any
    lookalike: Any
    feed: Any
    receiver: Person
    told: list[News] = field(default_factory=list)
    watcher: Watcher | None = None

    @property
    def crypto(self) -> CryptoPayments:
        return CryptoPayments(self.engine, self.chain, self.config)

    @property
    def site(self) -> wallets.Site:
        return wallets.Site(SITE_URI, self.config.chain_id)

    def watch(self, name: str | None = None, **changes: Any) -> Watcher:
        async def tell(news: News) -> None:
            self.told.append(news)

        config = replace(self.config, **changes) if changes else self.config
        return Watcher(self.engine, self.ledger, self.chain, config, tell, name)

    async def customer(self, account: str, usdc: int = 100_000_000) -> Person:
        """A person with native coin, `usdc` atomic units of the stablecoin (and of its
        look-alike), and their wallet bound to `account`."""
        someone = await self.evm.person()
        await self.evm.mint(self.token, someone.address, usdc)
        await self.evm.mint(self.lookalike, someone.address, usdc)
        await self.bind(account, someone)
        return someone

    async def bind(self, account: str, who: Person) -> wallets.Wallet:
        message = await wallets.challenge(self.engine, self.site, account, who.address)
        text = message.text()
        return await wallets.bind(self.engine, self.chain, self.site, account, text, who.sign(text))

    async def sell(self, account: str, asset: str = "token") -> Quote:
        return await crypto.sell(self.engine, self.crypto, PACK, account, asset)

    async def pay(self, who: Person, quote: Quote, amount: int | None = None) -> str:
        paid = quote.amount if amount is None else amount
        if quote.asset == "native":
            return await self.evm.pay_native(who, self.config.recipient, paid)
        return await self.evm.pay_token(who, self.token, self.config.recipient, paid)

    async def order(self, quote: Quote) -> orders.Order:
        return await orders.get(self.engine, quote.order_id)

    async def payment(self, tx: str, log_index: int = 0) -> onchain.ChainPayment | None:
        return await onchain.get(self.engine, self.config.chain_id, tx, log_index)

    def said(self, account: str) -> list[str]:
        return [n.toast for n in self.told if n.account == account]


async def open_shop(evm: Evm, engine: AsyncEngine, ledger: Ledger, **changes: Any) -> Shop:
    await evm.setup()
    token = await evm.deploy("Token", "USD Coin", "USDC", 6)
    lookalike = await evm.deploy("Token", "USD Coin", "USDC", 6)
    feed = await evm.deploy("PriceFeed", 8, "ETH / USD")
    await evm.set_price(feed, ETH_USD, await evm.now())
    receiver = await evm.person(eth=0)
    chain_id = await evm.chain_id()
    config = CryptoConfig(
        chain_id=chain_id, chain_name="Testnet", recipient=receiver.address,
        native=Asset("native", "ETH", 18, None),
        token=Asset("token", "USDC", 6, str(token.address).lower()),
        currency="usd", price_feed=str(feed.address).lower(), confirmations=3,
        quote_ttl=timedelta(minutes=30), explorer="https://explorer.example",
        poll_s=0.05, start_block=0,
    )  # fmt: skip
    config = replace(config, **changes)
    chain = Chain(evm.provider, chain_id)
    return Shop(evm, engine, ledger, chain, config, token, lookalike, feed, receiver)

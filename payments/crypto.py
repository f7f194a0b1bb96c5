"""Crypto top-ups: a pack paid in the chain's native coin or in a USD stablecoin, on any EVM chain.

A quote fixes, for one order, the asset, the receiving address and the exact amount in the asset's
atomic units, for `quote_minutes`: the stablecoin at face value, the native coin at the rate of an
on-chain price feed (AggregatorV3 `latestRoundData`; a stale or broken answer is refused) or at a
fixed configured rate. The person pays it from a wallet bound to their account
(payments/wallets.py); the watcher (payments/watcher.py) finds the transfer and payments/onchain.py
credits it after the configured confirmations.

`CryptoPayments` is the adapter behind the same `PaymentProvider` interface as Stripe and PayPal;
what has no meaning on a chain says so plainly (there are no webhooks, and a refund is a transfer
back that only the owner of the receiving wallet can sign).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payments import onchain, orders
from payments.chain import Chain
from payments.errors import ForgedNotice, NotRefundable, ProviderDown
from payments.orders import Order
from payments.packs import EXPONENTS, Pack
from payments.provider import Checkout, Notice, Payment, ReturnUrls, Status
from payments.quotes import Asset, CryptoConfig, NoQuote, Quote, quote_of, quotes

SHOWN_DECIMALS = 6  # a native amount is rounded up to this many decimals, to be readable


class CryptoPayments:
    """The crypto adapter (see the module's text)."""

    name = "crypto"

    def __init__(self, engine: AsyncEngine, chain: Chain, config: CryptoConfig) -> None:
        self.engine = engine
        self.chain = chain
        self.config = config

    async def rate(self, asset: Asset) -> Decimal:
        """What one whole coin of `asset` is worth in the packs' currency, now."""
        if asset.id == "token":
            return Decimal(1)
        if self.config.price_feed is None:
            if self.config.fixed_rate is None:
                raise NoQuote(f"No price is configured for {asset.symbol}.")
            return self.config.fixed_rate
        try:
            latest = await self.chain.price(self.config.price_feed)
        except ProviderDown as down:
            raise NoQuote(f"The {asset.symbol} price feed cannot be read now ({down}).") from None
        age = time.time() - latest.updated_at
        if latest.answer <= 0 or latest.answered_in_round < latest.round_id:
            raise NoQuote(f"The {asset.symbol} price feed has no valid answer now.")
        if age > self.config.price_max_age_s:
            raise NoQuote(
                f"The {asset.symbol} price feed's answer is {int(age // 60)} minutes old: too "
                "stale to sell at. Try again later or pay with the stablecoin."
            )
        return latest.price

    async def quote(self, order: Order, asset_id: str) -> Quote:
        """Fix the amount of `asset_id` that pays for `order`, for the quote's lifetime."""
        asset = self.config.assets.get(asset_id)
        if asset is None:
            raise NoQuote(f"Payment in {asset_id!r} is not offered here.")
        if order.currency != self.config.currency:
            raise NoQuote(f"Packs priced in {order.currency.upper()} cannot be paid in crypto.")
        rate = await self.rate(asset)
        major = Decimal(order.amount_minor).scaleb(-EXPONENTS.get(order.currency, 2))
        exact = (major / rate).scaleb(asset.decimals)
        step = Decimal(10) ** max(asset.decimals - SHOWN_DECIMALS, 0)
        amount = int((exact / step).to_integral_value(ROUND_CEILING) * step)
        now = datetime.now(UTC)
        made = Quote(
            order.id, order.account, self.config.chain_id, asset.id, asset.token,
            self.config.recipient, amount, asset.decimals, asset.symbol, rate, now,
            now + self.config.quote_ttl,
        )  # fmt: skip
        values = {c.name: getattr(made, c.name) for c in quotes.columns}
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(quotes).values(values | {"amount": str(amount), "rate": str(rate)})
            )
        return made

    async def start(self, order: Order, pack: Pack, urls: ReturnUrls) -> Checkout:
        """A quote in the stablecoin (the native coin where no token is configured); its
        checkout's URL is the EIP-681 link."""
        default = "token" if self.config.token is not None else "native"
        made = await self.quote(order, default)
        return Checkout(order.id, made.link)

    async def verify(self, body: bytes, headers: Mapping[str, str]) -> Notice:
        raise ForgedNotice("Crypto payments have no notifications: the app watches the chain.")

    async def checkout_of(self, body: bytes) -> str | None:
        return None

    async def payment(self, ref: str) -> Payment:
        """Where the order `ref` stands on the chain, as payments/onchain.py recorded it."""
        order = await orders.get(self.engine, ref)
        quote = await quote_of(self.engine, ref)
        paid = await onchain.of_order(self.engine, ref)
        status: Status = "open"
        amount_minor = order.amount_minor
        if paid is not None:
            status = "paid" if paid.state == "credited" else "processing"
            if paid.state in ("dropped", "vanished"):
                status = "failed" if paid.state == "vanished" else "open"
            amount_minor = order.amount_minor * paid.amount // quote.amount
        elif quote.expires_at <= datetime.now(UTC):
            status = "expired"
        return Payment(
            ref, order.id, status, order.currency, amount_minor,
            receipt_url=self.config.tx_url(paid.tx_hash) if paid else None,
            payment_ref=paid.tx_hash if paid else None,
        )  # fmt: skip

    async def confirm(self, ref: str) -> Payment:
        return await self.payment(ref)

    async def refund(self, payment: Payment, amount_minor: int, key: str) -> None:
        raise NotRefundable(
            "A crypto payment is refunded by sending the coins back from the receiving wallet, "
            "whose keys the app does not hold; then take the credits back with "
            "`python -m credits adjust`."
        )

    async def recent(self, since: datetime) -> list[str]:
        query = select(quotes.c.order_id).where(quotes.c.created_at >= since)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).scalars())


async def sell(
    engine: AsyncEngine, crypto: CryptoPayments, pack: Pack, account: str, asset_id: str
) -> Quote:
    """A new order of `account` for `pack`, and its quote in `asset_id`."""
    order = await orders.create(
        engine, account, crypto.name, pack.id, pack.currency, pack.price_minor, pack.units
    )
    try:
        made = await crypto.quote(order, asset_id)
    except Exception:
        await orders.move(engine, order.id, "failed", problem="no quote could be made")
        raise
    await orders.started(engine, order.id, order.id)
    return made

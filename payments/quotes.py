"""Crypto quotes: for one order, the asset, the receiving address and the exact amount in the
asset's atomic units, fixed for the quote's lifetime (payments/crypto.py makes them); and the
settings of the chain they are paid on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from payments import orders
from payments.chain import Chain
from payments.errors import PaymentError, UnknownOrder

AssetId = Literal["native", "token"]
BLOCK_TIME_SLACK = timedelta(seconds=60)
TRANSFER = "0xa9059cbb"  # the selector of ERC-20 transfer(address,uint256)

metadata = MetaData()
quotes = Table(
    "crypto_quotes",
    metadata,
    Column("order_id", Text, primary_key=True),
    Column("account", Text, nullable=False),
    Column("chain_id", BigInteger, nullable=False),
    Column("asset", Text, nullable=False),  # native, token
    Column("token", Text),  # the token contract, lowercase
    Column("recipient", Text, nullable=False),
    Column("amount", Text, nullable=False),  # atomic units, in decimal digits (uint256)
    Column("decimals", Integer, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("rate", Text, nullable=False),  # the order's currency per whole coin
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


class NoQuote(PaymentError):
    """No price can be quoted now (the feed is stale or down, or the asset is not offered)."""


@dataclass(frozen=True)
class Asset:
    id: AssetId
    symbol: str
    decimals: int
    token: str | None  # the token contract (lowercase), None for the native coin


@dataclass(frozen=True)
class CryptoConfig:
    chain_id: int
    chain_name: str
    recipient: str  # lowercase
    native: Asset | None  # offered when a price feed or a fixed rate is configured
    token: Asset | None
    currency: str  # what the stablecoin is worth one of, and what packs must be priced in
    price_feed: str | None = None
    fixed_rate: Decimal | None = None  # currency per native coin
    price_max_age_s: int = 3600
    confirmations: int = 12
    finalized: bool = False  # also wait for the chain's finalized block
    quote_ttl: timedelta = timedelta(minutes=30)
    underpayment: Literal["proportional", "none"] = "proportional"
    explorer: str | None = None  # https://etherscan.io
    poll_s: float = 1.0
    start_block: int | None = None
    log_range: int = 2000

    @property
    def assets(self) -> dict[str, Asset]:
        return {a.id: a for a in (self.token, self.native) if a is not None}

    def tx_url(self, tx_hash: str) -> str | None:
        return f"{self.explorer.rstrip('/')}/tx/{tx_hash}" if self.explorer else None


@dataclass(frozen=True)
class Quote:
    order_id: str
    account: str
    chain_id: int
    asset: AssetId
    token: str | None
    recipient: str
    amount: int
    decimals: int
    symbol: str
    rate: Decimal
    created_at: datetime
    expires_at: datetime

    @property
    def shown(self) -> str:
        """`12.5 USDC`"""
        return f"{show_atomic(self.amount, self.decimals)} {self.symbol}"

    @property
    def link(self) -> str:
        """The EIP-681 payment request a wallet opens."""
        to = Chain.checksum(self.recipient)
        if self.token is None:
            return f"ethereum:{to}@{self.chain_id}?value={self.amount}"
        token = Chain.checksum(self.token)
        return f"ethereum:{token}@{self.chain_id}/transfer?address={to}&uint256={self.amount}"

    def transaction(self) -> dict[str, str]:
        """The transaction that pays the quote, as EIP-1193 `eth_sendTransaction` takes it."""
        if self.token is None:
            return {"to": Chain.checksum(self.recipient), "value": hex(self.amount), "data": "0x"}
        data = TRANSFER + f"{int(self.recipient, 16):064x}{self.amount:064x}"
        return {"to": Chain.checksum(self.token), "value": "0x0", "data": data}

    def credits_for(self, paid: int, units: int, underpayment: str) -> int:
        """The credits `paid` atomic units buy of an order of `units`: in proportion (more for
        an overpayment), or nothing for an underpayment where the setting says so."""
        if paid < self.amount and underpayment == "none":
            return 0
        return units * paid // self.amount


def show_atomic(amount: int, decimals: int) -> str:
    """`12500000, 6` -> `12.5`"""
    text = f"{Decimal(amount).scaleb(-decimals):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


async def quote_of(engine: AsyncEngine, order_id: str) -> Quote:
    query = select(*quotes.columns).where(quotes.c.order_id == order_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    if row is None:
        raise UnknownOrder(f"There is no crypto quote for order {order_id!r}.")
    return _quote(row._mapping)


async def open_quotes(engine: AsyncEngine, account: str, asset: str, at: datetime) -> list[Quote]:
    """The person's quotes in `asset` that were open at `at` (a block's time: whole seconds,
    and a little ahead or behind the app's clock) and are not paid yet, oldest first. An order
    the watcher expired meanwhile still takes a payment mined in time."""
    query = (
        select(*quotes.columns)
        .join(orders.orders, orders.orders.c.id == quotes.c.order_id)
        .where(
            (quotes.c.account == account) & (quotes.c.asset == asset)
            & (quotes.c.created_at <= at + BLOCK_TIME_SLACK) & (quotes.c.expires_at >= at)
            & orders.orders.c.state.in_(("pending", "expired"))
        )
        .order_by(quotes.c.created_at, quotes.c.order_id)
    )  # fmt: skip
    async with engine.connect() as conn:
        return [_quote(row._mapping) for row in await conn.execute(query)]


def _quote(row: RowMapping) -> Quote:
    values = dict(row)
    for key in ("created_at", "expires_at"):
        moment = values[key]
        assert isinstance(moment, datetime)
        values[key] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    values["amount"] = int(str(values["amount"]))
    values["rate"] = Decimal(str(values["rate"]))
    return Quote(**values)

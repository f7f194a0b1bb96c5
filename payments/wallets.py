"""Wallets bound to accounts by Sign-In with Ethereum: a payment counts for a person only when it
was sent from a wallet they proved is theirs (otherwise anyone could claim anyone's transaction).

`challenge` writes the message for one address under a nonce minted here (10 minutes, one account,
used once); `bind` checks a signed message to the letter: the app's domain and URI, the configured
chain, the times, the nonce (consumed in the same transaction that binds), and the signature,
recovered with eth-account. A wallet belongs to one account.

Contract wallets (Safe and other smart accounts, whose signatures EIP-1271 verifies by a call to
the wallet) are refused with a message saying so: their payments arrive by internal calls that a
transaction check does not see either. An ordinary account delegated by EIP-7702 signs with its
own key and is accepted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from eth_utils import to_checksum_address
from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from payments.chain import Chain
from payments.errors import PaymentError
from payments.siwe import BadMessage, SiweMessage, parse, signer

NONCE_TTL = timedelta(minutes=10)
CLOCK_SKEW = timedelta(minutes=2)
MOST_WALLETS = 10
DELEGATED = bytes.fromhex("ef0100")  # EIP-7702: an ordinary account running a contract's code

metadata = MetaData()
wallets = Table(
    "wallets",
    metadata,
    Column("address", Text, primary_key=True),  # lowercase
    Column("account", Text, nullable=False),
    Column("bound_at", DateTime(timezone=True), nullable=False),
)
nonces = Table(
    "wallet_nonces",
    metadata,
    Column("nonce", Text, primary_key=True),
    Column("account", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)


class NotBound(PaymentError):
    """A sign-in message or signature that does not bind the wallet; the message says why."""


@dataclass(frozen=True)
class Site:
    """Where sign-in messages must come from: the app's public URL and the chain it watches."""

    uri: str  # https://chat.example.com
    chain_id: int

    @property
    def domain(self) -> str:
        return urlsplit(self.uri).netloc


@dataclass(frozen=True)
class Wallet:
    address: str
    account: str
    bound_at: datetime


async def challenge(engine: AsyncEngine, site: Site, account: str, address: str) -> SiweMessage:
    """The message that binds `address` to `account` once signed, under a fresh nonce."""
    try:
        checksummed = to_checksum_address(address)
    except ValueError:
        raise NotBound(f"{address!r} is not an Ethereum address.") from None
    now = datetime.now(UTC).replace(microsecond=0)
    message = SiweMessage(
        site.domain, checksummed, f"Bind this wallet to your account on {site.domain} to pay "
        "for credits from it.", site.uri, site.chain_id, secrets.token_hex(12), now,
        expiration_time=now + NONCE_TTL,
    )  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(delete(nonces).where(nonces.c.expires_at < now - NONCE_TTL))
        await conn.execute(
            insert(nonces).values(
                nonce=message.nonce, account=account, address=checksummed.lower(),
                expires_at=now + NONCE_TTL,
            )
        )  # fmt: skip
    return message


async def bind(
    engine: AsyncEngine, chain: Chain, site: Site, account: str, text: str, signature: str
) -> Wallet:
    """Bind the wallet that signed `text` to `account`, if everything in it holds (`NotBound`,
    with what did not, otherwise: nothing changes)."""
    try:
        message = parse(text)
    except BadMessage as bad:
        raise NotBound(str(bad)) from None
    now = datetime.now(UTC)
    _check_site(message, site)
    _check_times(message, now)
    address = message.address.lower()
    if message.text() != text.replace("\r\n", "\n"):
        raise NotBound("The message is not written as the standard writes it.")
    try:
        signed_by = signer(message.text(), signature)
    except BadMessage as bad:
        raise NotBound(str(bad)) from None
    if signed_by != address:
        code = await chain.has_code(address)
        if code and not code.startswith(DELEGATED):
            raise NotBound(
                "This is a contract wallet (a Safe or another smart account): they are not "
                "accepted here (EIP-1271 signatures are not checked). Bind an ordinary account."
            )
        raise NotBound("The signature was not made by the wallet the message names.")
    try:
        await _consume_and_bind(engine, message, account, now)
    except IntegrityError:  # another account bound it in the meantime: the primary key decides
        raise NotBound("This wallet is bound to another account.") from None
    return Wallet(address, account, now)


async def _consume_and_bind(
    engine: AsyncEngine, message: SiweMessage, account: str, now: datetime
) -> None:
    """Use the message's nonce and bind its wallet, in one transaction."""
    address = message.address.lower()
    async with engine.begin() as conn:
        used = await conn.execute(
            update(nonces)
            .where(
                (nonces.c.nonce == message.nonce) & (nonces.c.account == account)
                & (nonces.c.address == address) & nonces.c.used_at.is_(None)
                & (nonces.c.expires_at > now)
            )
            .values(used_at=now)
        )  # fmt: skip
        if used.rowcount != 1:
            raise NotBound(
                "This sign-in message was already used, has expired or was not issued to you: "
                "ask for a new one."
            )
        owner = (
            await conn.execute(select(wallets.c.account).where(wallets.c.address == address))
        ).scalar_one_or_none()
        if owner is not None and owner != account:
            raise NotBound("This wallet is bound to another account.")
        count = (
            await conn.execute(select(func.count()).where(wallets.c.account == account))
        ).scalar_one()
        if owner is None and count >= MOST_WALLETS:
            raise NotBound(f"An account can have at most {MOST_WALLETS} wallets: unbind one first.")
        if owner is None:
            await conn.execute(
                insert(wallets).values(address=address, account=account, bound_at=now)
            )


async def of_account(engine: AsyncEngine, account: str) -> list[Wallet]:
    query = select(wallets).where(wallets.c.account == account).order_by(wallets.c.bound_at)
    async with engine.connect() as conn:
        return [Wallet(*_utc(row)) for row in await conn.execute(query)]


async def owners(engine: AsyncEngine, addresses: set[str]) -> dict[str, str]:
    """The account each of `addresses` (lowercase) is bound to, where it is bound."""
    if not addresses:
        return {}
    query = select(wallets.c.address, wallets.c.account).where(wallets.c.address.in_(addresses))
    async with engine.connect() as conn:
        return {address: account for address, account in await conn.execute(query)}


async def unbind(engine: AsyncEngine, account: str, address: str) -> bool:
    """Unbind the person's wallet; whether it was theirs. Payments it made stay theirs."""
    async with engine.begin() as conn:
        done = await conn.execute(
            delete(wallets).where(
                (wallets.c.address == address.lower()) & (wallets.c.account == account)
            )
        )
    return done.rowcount == 1


def _check_site(message: SiweMessage, site: Site) -> None:
    if message.domain != site.domain:
        raise NotBound(
            f"This message asks to sign in to {message.domain}, not to {site.domain}: it was "
            "not written for this site."
        )
    uri = urlsplit(message.uri)
    if (uri.scheme, uri.netloc) != (urlsplit(site.uri).scheme, urlsplit(site.uri).netloc):
        raise NotBound(f"The message's URI {message.uri} is not this site's ({site.uri}).")
    if message.chain_id != site.chain_id:
        raise NotBound(
            f"The message is for chain {message.chain_id}; this site takes payments on chain "
            f"{site.chain_id}."
        )


def _check_times(message: SiweMessage, now: datetime) -> None:
    if message.issued_at > now + CLOCK_SKEW:
        raise NotBound("The message was issued in the future: check your device's clock.")
    if message.issued_at < now - NONCE_TTL - CLOCK_SKEW:
        raise NotBound("The message is too old: ask for a new one.")
    if message.expiration_time is not None and message.expiration_time <= now:
        raise NotBound("The message has expired: ask for a new one.")
    if message.not_before is not None and message.not_before > now + CLOCK_SKEW:
        raise NotBound("The message is not valid yet.")


def _utc(row: tuple[str, str, datetime]) -> tuple[str, str, datetime]:
    address, account, moment = row
    return address, account, moment if moment.tzinfo else moment.replace(tzinfo=UTC)

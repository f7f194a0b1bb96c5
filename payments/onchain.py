"""Payments found on the chain, from the block that holds them to the credits they buy.

Each transfer to the receiving address is one row, identified by `(chain id, transaction hash,
log index)` (the log index is -1 for native coin). The same identity is the id of its grant in the
ledger (`crypto:<chain>:<hash>:<log index>`), so a transaction credits once, whoever reports it
(the watcher, a pasted hash, both at once) and however often.

    confirming -> credited                 the sender's wallet is bound to a person, its
               -> unmatched                  confirmations reached: credited against the quote
               -> underpaid                  that was open when it was mined (else unmatched,
               -> dropped (-> confirming)    for an administrator); dropped if a reorg took it
    credited   -> vanished                   out first; vanished if it left after being credited
    unattributed                           sent from a wallet bound to no one

A transfer counts for a person only if it was sent from a wallet bound to them
(payments/wallets.py). What the person paid buys credits in proportion to the quote (more for an
overpayment; an underpayment in proportion or not at all, `CRYPTO_UNDERPAYMENT`). Nothing is
credited before its confirmations; a credited payment that leaves the chain is never silently
kept or removed: it is marked vanished and reported to the administrator, the credits untouched.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ColumnElement

from credits.ledger import System, show_credits
from credits.metering import transfer_id
from credits.store import Ledger
from payments import orders, wallets
from payments.chain import NATIVE_LOG_INDEX, Chain, Transfer
from payments.errors import PaymentError
from payments.packs import show_money
from payments.quotes import CryptoConfig, open_quotes, quote_of, quotes, show_atomic

log = logging.getLogger("payments")
TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")

metadata = MetaData()
payments = Table(
    "crypto_payments",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("tx_hash", Text, primary_key=True),
    Column("log_index", Integer, primary_key=True),
    Column("token", Text),
    Column("sender", Text, nullable=False),
    Column("recipient", Text, nullable=False),
    Column("amount", Text, nullable=False),  # atomic units, in decimal digits (uint256)
    Column("block_number", BigInteger),
    Column("block_hash", Text),
    Column("block_time", BigInteger, nullable=False),
    Column("account", Text),
    Column("order_id", Text, unique=True),
    Column("state", Text, nullable=False),
    Column("confirmations", Integer, nullable=False, server_default="0"),
    Column("credited", BigInteger),
    Column("problem", Text),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
KEY = (payments.c.chain_id, payments.c.tx_hash, payments.c.log_index)


class NotClaimed(PaymentError):
    """A pasted transaction that pays nothing to this person; the message says why."""


@dataclass(frozen=True)
class ChainPayment:
    chain_id: int
    tx_hash: str
    log_index: int
    token: str | None
    sender: str
    recipient: str
    amount: int
    block_number: int | None
    block_hash: str | None
    block_time: int
    account: str | None
    order_id: str | None
    state: str
    confirmations: int
    credited: int | None
    problem: str | None

    @property
    def key(self) -> str:
        return f"{self.chain_id}:{self.tx_hash}:{self.log_index}"

    @property
    def asset(self) -> str:
        return "native" if self.log_index == NATIVE_LOG_INDEX else "token"

    @property
    def grant_id(self) -> str:
        """The ledger transfer that credits it."""
        return transfer_id("crypto", self.key)


@dataclass(frozen=True)
class News:
    """What to tell a person about one of their payments."""

    account: str
    toast: str
    message: str = ""
    everywhere: bool = True  # to all their open chats; False: only to whoever asked (a claim)


_FIELDS = [c for c in payments.columns if c.name not in ("seen_at", "updated_at")]


def _payment(row: Sequence[object]) -> ChainPayment:
    values = list(row)
    values[6] = int(str(values[6]))  # amount
    return ChainPayment(*values)  # type: ignore[arg-type]


async def get(
    engine: AsyncEngine, chain_id: int, tx_hash: str, log_index: int
) -> ChainPayment | None:
    query = select(*_FIELDS).where(
        (payments.c.chain_id == chain_id) & (payments.c.tx_hash == tx_hash)
        & (payments.c.log_index == log_index)
    )  # fmt: skip
    async with engine.connect() as conn:
        row = (await conn.execute(query)).one_or_none()
    return None if row is None else _payment(row)


async def of_order(engine: AsyncEngine, order_id: str) -> ChainPayment | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(*_FIELDS).where(payments.c.order_id == order_id))
        ).one_or_none()
    return None if row is None else _payment(row)


async def in_states(engine: AsyncEngine, *states: str, since_block: int = 0) -> list[ChainPayment]:
    query = select(*_FIELDS).where(
        payments.c.state.in_(states)
        & (payments.c.block_number.is_(None) | (payments.c.block_number >= since_block))
    )
    async with engine.connect() as conn:
        rows = await conn.execute(query.order_by(payments.c.block_number, payments.c.tx_hash))
        return [_payment(row) for row in rows]


async def record(
    engine: AsyncEngine, config: CryptoConfig, transfers: Sequence[Transfer]
) -> list[News]:
    """Record transfers found on the chain (any already recorded is only moved where a reorg
    put it): each attributed to the owner of the wallet that sent it and matched to their quote
    that was open when it was mined. Tells each person what was seen."""
    owners = await wallets.owners(engine, {t.sender for t in transfers})
    news = []
    for transfer in transfers:
        known = await get(engine, transfer.chain_id, transfer.tx_hash, transfer.log_index)
        if known is None:
            made = await _insert(engine, config, transfer, owners.get(transfer.sender))
            if made is not None and made.account is not None:
                news.append(_seen(config, made))
        elif known.state in ("confirming", "dropped") and known.block_hash != transfer.block_hash:
            moved = await _moved(engine, config, known, transfer)
            if moved is not None and moved.account is not None:
                news.append(_seen(config, moved))
    return news


async def _insert(
    engine: AsyncEngine, config: CryptoConfig, transfer: Transfer, account: str | None
) -> ChainPayment | None:
    """A new row for `transfer`, matched to the first open quote no other payment took (None if
    another caller recorded it first)."""
    at = datetime.fromtimestamp(transfer.block_time, UTC)
    asset = "native" if transfer.token is None else "token"
    candidates = await open_quotes(engine, account, asset, at) if account else []
    for order_id in [q.order_id for q in candidates] + [None]:
        state = "confirming" if account else "unattributed"
        try:
            await _write_new(engine, transfer, account, order_id, state)
        except IntegrityError:
            if await get(engine, transfer.chain_id, transfer.tx_hash, transfer.log_index):
                return None  # recorded by another caller
            continue  # that quote was taken by another payment meanwhile
        return await get(engine, transfer.chain_id, transfer.tx_hash, transfer.log_index)
    raise AssertionError("a payment with no order cannot conflict on its order")


async def _write_new(
    engine: AsyncEngine, t: Transfer, account: str | None, order_id: str | None, state: str
) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            insert(payments).values(
                chain_id=t.chain_id, tx_hash=t.tx_hash, log_index=t.log_index, token=t.token,
                sender=t.sender, recipient=t.recipient, amount=str(t.amount),
                block_number=t.block_number, block_hash=t.block_hash, block_time=t.block_time,
                account=account, order_id=order_id, state=state, seen_at=now, updated_at=now,
            )
        )  # fmt: skip
        if order_id is not None:
            await conn.execute(
                update(orders.orders)
                .where(orders.orders.c.id == order_id)
                .values(
                    state="pending",  # a quote the watcher expired was paid in time
                    provider_status="processing",
                    updated_at=now,
                    version=orders.orders.c.version + 1,
                )
            )


async def _moved(
    engine: AsyncEngine, config: CryptoConfig, known: ChainPayment, transfer: Transfer
) -> ChainPayment | None:
    """A payment a reorg moved to another block (or put back after dropping it): its
    confirmations count again from the new block; a dropped one is matched again."""
    order_id = known.order_id
    if known.state == "dropped" and known.account is not None:
        at = datetime.fromtimestamp(transfer.block_time, UTC)
        candidates = await open_quotes(engine, known.account, known.asset, at)
        order_id = candidates[0].order_id if candidates else None
    async with engine.begin() as conn:
        done = await conn.execute(
            update(payments)
            .where(_is(known) & (payments.c.state == known.state)
                   & (payments.c.block_hash.is_(None) | (payments.c.block_hash == known.block_hash)))
            .values(block_number=transfer.block_number, block_hash=transfer.block_hash,
                    block_time=transfer.block_time, confirmations=0, order_id=order_id,
                    state="confirming" if known.account else known.state, problem=None,
                    updated_at=datetime.now(UTC))
        )  # fmt: skip
    if done.rowcount != 1:
        return None
    log.warning("payments: crypto payment %s moved to block %d by a reorg",
                known.key, transfer.block_number)  # fmt: skip
    return await get(engine, known.chain_id, known.tx_hash, known.log_index)


async def advance(
    engine: AsyncEngine,
    ledger: Ledger,
    chain: Chain,
    config: CryptoConfig,
    head: int,
    finalized: int | None,
    only: Sequence[ChainPayment] | None = None,
) -> list[News]:
    """Count the confirmations of every confirming payment (or of `only`) at block `head`, and
    credit those that have enough."""
    news = []
    for paid in only if only is not None else await in_states(engine, "confirming"):
        if paid.state != "confirming" or paid.block_number is None:
            continue
        count = max(head - paid.block_number + 1, 0)
        ready = count >= config.confirmations and (
            not config.finalized or (finalized is not None and paid.block_number <= finalized)
        )
        if ready:
            news += await _credit(engine, ledger, chain, config, paid)
        elif (
            count != paid.confirmations
            and await _set(engine, paid, confirmations=count)
            and paid.account
        ):
            news.append(_progress(config, paid, count))
    return news


async def _credit(
    engine: AsyncEngine, ledger: Ledger, chain: Chain, config: CryptoConfig, paid: ChainPayment
) -> list[News]:
    """Credit a payment with its confirmations, once its transaction is where it was seen."""
    assert paid.account is not None
    where = await chain.where(paid.tx_hash)
    if where is None:
        return await _drop(engine, config, paid)
    if where != (paid.block_number, paid.block_hash):
        await _set(engine, paid, block_number=where[0], block_hash=where[1], confirmations=0)
        return []
    amount = f"{show_atomic(paid.amount, _decimals(config, paid))} {_symbol(config, paid)}"
    if paid.order_id is None:
        problem = "no quote of this account in this coin was open when it was mined"
        if await _set(engine, paid, state="unmatched", problem=problem):
            log.warning("payments: crypto payment %s (%s from %s) is unmatched: %s; credit it "
                        "with `python -m payments crypto credit`", paid.key, amount, paid.sender,
                        problem)  # fmt: skip
            return [News(paid.account, f"Payment of {amount} received without an open order",
                         f"**{amount} arrived** from your wallet {paid.sender}, but no order of "
                         "yours in that coin was open when it was sent, so nothing was credited "
                         "yet. An administrator has been told and will credit it.")]  # fmt: skip
        return []
    quote = await quote_of(engine, paid.order_id)
    order = await orders.get(engine, paid.order_id)
    units = quote.credits_for(paid.amount, order.units, config.underpayment)
    if units <= 0:
        problem = f"paid {amount} of the {quote.shown} quoted; underpayments are not credited"
        if await _set(engine, paid, state="underpaid", problem=problem):
            await orders.move(engine, order.id, "failed", problem=problem)
            return [News(paid.account, "Payment too small: nothing credited",
                         f"**{amount} arrived** for an order of {quote.shown}: too little, and "
                         "underpayments are not credited here. Contact the administrator to get "
                         "it back.")]  # fmt: skip
        return []
    given = await ledger.grant(
        paid.account, units, paid.grant_id, code="purchase",
        metadata={"order": order.id, "pack": order.pack, "chain": paid.chain_id,
                  "tx": paid.tx_hash, "log_index": paid.log_index, "paid": str(paid.amount),
                  "quoted": str(quote.amount)},
        source=System.CRYPTO_CLEARING,
    )  # fmt: skip
    if not await _mark_credited(engine, config, paid, units):
        return []  # another caller credited it first and tells
    covered = await ledger.transfer(f"owed:{given.pk}")
    price = show_money(order.amount_minor, order.currency)
    short = (
        f" That is {'more' if paid.amount > quote.amount else 'less'} than the {quote.shown} "
        "quoted, so the credits are in proportion."
        if paid.amount != quote.amount
        else ""
    )
    owed = f" {show_credits(covered.amount)} of them covered what you owed." if covered else ""
    return [News(paid.account, f"Payment received: +{show_credits(units)} credits",
                 f"**Payment received.** {amount} for the {price} pack on {config.chain_name}: "
                 f"**{show_credits(units)} credits** were added to your balance.{short}{owed}")]  # fmt: skip


async def _mark_credited(
    engine: AsyncEngine, config: CryptoConfig, paid: ChainPayment, units: int
) -> bool:
    """The payment credited and its order paid, in one transaction; whether this call did it."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        done = await conn.execute(
            update(payments)
            .where(_is(paid) & (payments.c.state == "confirming"))
            .values(
                state="credited", credited=units, confirmations=config.confirmations, updated_at=now
            )
        )
        if done.rowcount != 1:
            return False
        await conn.execute(
            update(orders.orders)
            .where((orders.orders.c.id == paid.order_id)
                   & orders.orders.c.state.in_(orders.MOVES["paid"]))
            .values(state="paid", provider_status="paid", payment_ref=paid.tx_hash,
                    receipt_url=config.tx_url(paid.tx_hash), transfer_id=paid.grant_id,
                    credited=units, updated_at=now, version=orders.orders.c.version + 1)
        )  # fmt: skip
    return True


async def _drop(engine: AsyncEngine, config: CryptoConfig, paid: ChainPayment) -> list[News]:
    problem = "its transaction left the chain (a reorganisation) before it was confirmed"
    if not await _set(engine, paid, state="dropped", order_id=None, block_number=None,
                      block_hash=None, confirmations=0, problem=problem):  # fmt: skip
        return []
    if paid.order_id is not None:
        await _clear_processing(engine, paid.order_id)
    log.warning("payments: crypto payment %s dropped: %s", paid.key, problem)
    if paid.account is None:
        return []
    return [News(paid.account, "Payment left the chain: nothing credited",
                 f"Your transaction {paid.tx_hash} is no longer on {config.chain_name} (the chain "
                 "reorganised before it was confirmed). Nothing was credited; if it is mined "
                 "again it will be counted then.")]  # fmt: skip


async def recheck(
    engine: AsyncEngine, chain: Chain, config: CryptoConfig, since_block: int
) -> list[News]:
    """After a reorg: every payment from `since_block` on, checked against the chain as it is
    now. A confirming one that left is dropped; a credited one that left is marked vanished and
    reported to the administrator, its credits left as they are."""
    news = []
    for paid in await in_states(engine, "confirming", "credited", since_block=since_block):
        if paid.block_number is None:
            continue
        where = await chain.where(paid.tx_hash)
        if where == (paid.block_number, paid.block_hash):
            continue
        if paid.state == "confirming":
            if where is None:
                news += await _drop(engine, config, paid)
            else:
                await _set(
                    engine, paid, block_number=where[0], block_hash=where[1], confirmations=0
                )
        elif where is None:
            problem = "credited, then its transaction left the chain (a reorganisation)"
            if await _set(engine, paid, state="vanished", problem=problem):
                log.error("payments: ADMIN: crypto payment %s credited %s units to %s, then "
                          "left the chain; the credits stay until you decide (`python -m credits "
                          "adjust`)", paid.key, paid.credited, paid.account)  # fmt: skip
        else:
            await _set(engine, paid, block_number=where[0], block_hash=where[1])
            log.warning("payments: credited crypto payment %s moved to block %d by a reorg",
                        paid.key, where[0])  # fmt: skip
    return news


async def claim(
    engine: AsyncEngine,
    ledger: Ledger,
    chain: Chain,
    config: CryptoConfig,
    account: str,
    tx_hash: str,
) -> list[News]:
    """A transaction hash the person pasted: its transfers to us recorded and, where confirmed,
    credited. `NotClaimed` says why it buys them nothing (another chain, failed, paid someone
    else, sent from a wallet that is not theirs)."""
    tx_hash = tx_hash.strip().lower()
    if not TX_HASH.fullmatch(tx_hash):
        raise NotClaimed("That is not a transaction hash (0x and 64 hexadecimal digits).")
    token = config.token.token if config.token else None
    try:
        succeeded, found = await chain.transfers_in(tx_hash, token, config.recipient)
    except LookupError:
        raise NotClaimed(
            f"There is no transaction {tx_hash} on {config.chain_name} (chain {config.chain_id}) "
            "yet: was it sent on another network, or is it still waiting to be mined?"
        ) from None
    if not succeeded:
        raise NotClaimed(f"Transaction {tx_hash} failed on the chain: it paid nothing.")
    if not found:
        raise NotClaimed(
            f"Transaction {tx_hash} paid nothing to {Chain.checksum(config.recipient)} in "
            f"{' or '.join(a.symbol for a in config.assets.values())}."
        )
    owners = await wallets.owners(engine, {t.sender for t in found})
    mine = [t for t in found if owners.get(t.sender) == account]
    if not mine:
        sender = found[0].sender
        whose = "another account" if sender in owners else "no account"
        raise NotClaimed(
            f"Transaction {tx_hash} was sent from {sender}, a wallet bound to {whose}. Only "
            "payments from your own bound wallets count: bind it with Connect wallet first."
        )
    news = await record(engine, config, mine)
    recorded = []
    for t in mine:
        paid = await get(engine, t.chain_id, t.tx_hash, t.log_index)
        if paid is not None and paid.state == "unattributed":
            paid = await _attribute(engine, paid, account)
        if paid is not None:
            recorded.append(paid)
    head, finalized = await chain.head(), await chain.finalized() if config.finalized else None
    news += await advance(engine, ledger, chain, config, head, finalized, only=recorded)
    for paid in recorded:
        if paid.state == "credited":
            news.append(News(account, "Already credited", f"Transaction {tx_hash} was credited "
                             f"already ({show_credits(paid.credited or 0)} credits).", False))  # fmt: skip
        elif paid.state in ("unmatched", "underpaid", "vanished", "dropped"):
            news.append(News(account, f"Payment {paid.state}", f"Transaction {tx_hash}: "
                             f"{paid.problem}.", False))  # fmt: skip
    return news


async def _attribute(engine: AsyncEngine, paid: ChainPayment, account: str) -> ChainPayment | None:
    """An unattributed payment whose wallet has since been bound to `account`: theirs now."""
    at = datetime.fromtimestamp(paid.block_time, UTC)
    choices: list[str | None] = [
        q.order_id for q in await open_quotes(engine, account, paid.asset, at)
    ]
    for order_id in [*choices, None]:
        try:
            done = await _set(engine, paid, account=account, state="confirming", order_id=order_id)
        except IntegrityError:
            continue
        return await get(engine, paid.chain_id, paid.tx_hash, paid.log_index) if done else None
    return None


NEEDS_ADMIN = ("unmatched", "underpaid", "vanished", "unattributed")


async def credit_by_hand(
    engine: AsyncEngine, ledger: Ledger, key: str, units: int, by: str
) -> ChainPayment:
    """An administrator credits a payment the rules could not (`unmatched`: no quote was open;
    `underpaid`) with `units`, under the payment's own transfer id: once, whoever asks again."""
    chain_id, tx_hash, log_index = _parse_key(key)
    paid = await get(engine, chain_id, tx_hash, log_index)
    if paid is None:
        raise NotClaimed(f"There is no recorded crypto payment {key}.")
    if paid.state not in ("unmatched", "underpaid") or paid.account is None:
        raise NotClaimed(f"Payment {key} is {paid.state}: only unmatched or underpaid payments "
                         "of a known account are credited by hand.")  # fmt: skip
    await ledger.grant(
        paid.account, units, paid.grant_id, code="purchase",
        metadata={"chain": chain_id, "tx": tx_hash, "log_index": log_index,
                  "paid": str(paid.amount), "by_hand": by},
        source=System.CRYPTO_CLEARING,
    )  # fmt: skip
    await _set(engine, paid, state="credited", credited=units, problem=f"credited by {by}")
    done = await get(engine, chain_id, tx_hash, log_index)
    assert done is not None
    return done


def _parse_key(key: str) -> tuple[int, str, int]:
    try:
        chain_id, tx_hash, log_index = key.strip().lower().split(":")
        if not TX_HASH.fullmatch(tx_hash):
            raise ValueError(tx_hash)
        return int(chain_id), tx_hash, int(log_index)
    except ValueError:
        raise NotClaimed(f"{key!r} is not <chain id>:<transaction hash>:<log index>.") from None


async def expire_quotes(engine: AsyncEngine, config: CryptoConfig, now: datetime) -> int:
    """Move pending crypto orders whose quote has ended without a payment to expired."""
    unpaid = (
        select(quotes.c.order_id)
        .where((quotes.c.expires_at < now) & quotes.c.order_id.not_in(
            select(payments.c.order_id).where(payments.c.order_id.is_not(None))))
    )  # fmt: skip
    async with engine.begin() as conn:
        done = await conn.execute(
            update(orders.orders)
            .where((orders.orders.c.provider == "crypto") & (orders.orders.c.state == "pending")
                   & orders.orders.c.id.in_(unpaid))
            .values(state="expired", provider_status="expired", updated_at=now,
                    version=orders.orders.c.version + 1)
        )  # fmt: skip
    return int(done.rowcount or 0)


async def counts(engine: AsyncEngine) -> dict[str, int]:
    """How many payments are in each state (/healthz, the admin's report)."""
    query = select(payments.c.state, func.count()).group_by(payments.c.state)
    async with engine.connect() as conn:
        return {state: int(n) for state, n in await conn.execute(query)}


async def _clear_processing(engine: AsyncEngine, order_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(orders.orders)
            .where((orders.orders.c.id == order_id) & (orders.orders.c.state == "pending"))
            .values(
                provider_status=None,
                updated_at=datetime.now(UTC),
                version=orders.orders.c.version + 1,
            )
        )


async def _set(engine: AsyncEngine, paid: ChainPayment, **values: object) -> bool:
    """Change the payment if it is still in the state it was read in; whether it changed."""
    async with engine.begin() as conn:
        done = await conn.execute(
            update(payments)
            .where(_is(paid) & (payments.c.state == paid.state))
            .values(**values, updated_at=datetime.now(UTC))
        )
    return done.rowcount == 1


def _is(paid: ChainPayment) -> ColumnElement[bool]:
    return (
        (payments.c.chain_id == paid.chain_id) & (payments.c.tx_hash == paid.tx_hash)
        & (payments.c.log_index == paid.log_index)
    )  # fmt: skip


def _seen(config: CryptoConfig, paid: ChainPayment) -> News:
    assert paid.account is not None
    amount = f"{show_atomic(paid.amount, _decimals(config, paid))} {_symbol(config, paid)}"
    return News(
        paid.account, f"Payment seen: {amount}",
        f"**Payment seen:** {amount} from {paid.sender} in block {paid.block_number}. It is "
        f"credited after {config.confirmations} confirmations.",
    )  # fmt: skip


def _progress(config: CryptoConfig, paid: ChainPayment, count: int) -> News:
    assert paid.account is not None
    return News(paid.account, f"Payment seen, {count} of {config.confirmations} confirmations")


def _decimals(config: CryptoConfig, paid: ChainPayment) -> int:
    asset = config.assets.get(paid.asset)
    return asset.decimals if asset else 18


def _symbol(config: CryptoConfig, paid: ChainPayment) -> str:
    asset = config.assets.get(paid.asset)
    return asset.symbol if asset else paid.asset

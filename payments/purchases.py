"""Buying a pack, from the first click to the last refund: every path that moves an order.

- `start`: an order for a pack (the price from the catalogue, never from the client) and its
  checkout at the provider.
- `on_notice`: a webhook, verified on its raw body and stored, then the checkout's real state
  fetched and applied (the app's webhook route leaves the second half to payments/inbox.py).
- `on_return`: the person came back from the provider's page (their own order only).
- `refund`: an administrator refunds all or part of a paid order at the provider.
- `reconcile`: what webhooks missed, found by asking the providers; and the orders whose ledger
  entries disagree with them.

Each ends in `fulfilment.apply`, which may run any number of times at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from credits.store import Ledger
from payments import inbox, orders
from payments.errors import NotRefundable, ProviderDown, UnknownOrder
from payments.fulfilment import Change, apply
from payments.orders import Order
from payments.packs import Pack
from payments.provider import Checkout, PaymentProvider, ReturnUrls

log = logging.getLogger("payments")


async def start(
    engine: AsyncEngine, provider: PaymentProvider, pack: Pack, account: str, urls: ReturnUrls
) -> tuple[Order, Checkout]:
    """A new order of `account` for `pack`, and where to pay for it (`{order}` in the return
    URLs becomes the order's id). A provider that fails leaves the order failed (nothing was
    charged) and raises `ProviderDown`."""
    order = await orders.create(
        engine, account, provider.name, pack.id, pack.currency, pack.price_minor, pack.units
    )
    urls = ReturnUrls(
        urls.success.replace("{order}", order.id), urls.cancel.replace("{order}", order.id)
    )
    try:
        checkout = await provider.start(order, pack, urls)
    except Exception:
        await orders.move(engine, order.id, "failed", problem="the checkout did not start")
        raise
    await orders.started(engine, order.id, checkout.ref)
    return await orders.get(engine, order.id), checkout


async def on_notice(
    engine: AsyncEngine,
    ledger: Ledger,
    provider: PaymentProvider,
    body: bytes,
    headers: Mapping[str, str],
) -> Change | None:
    """A webhook received and applied at once (the app answers first and applies in its
    worker, payments/inbox.py): `ForgedNotice` if its signature does not hold; None if it was
    applied before or is about nothing we sold."""
    notice = await inbox.receive(engine, provider, body, headers)
    return await inbox.process(engine, ledger, provider, notice)


async def on_return(
    engine: AsyncEngine,
    ledger: Ledger,
    provider: PaymentProvider,
    account: str,
    order_id: str,
) -> Change:
    """The person came back from paying: their order, brought up to date (another person's
    order, or an unknown one, is `UnknownOrder`)."""
    order = await orders.get(engine, order_id, account)
    if order.provider != provider.name or order.provider_ref is None:
        raise UnknownOrder(f"There is no {provider.name} order {order_id!r}.")
    payment = await provider.confirm(order.provider_ref)
    return await apply(engine, ledger, order.id, payment)


async def refund(
    engine: AsyncEngine,
    ledger: Ledger,
    provider: PaymentProvider,
    order_id: str,
    amount_minor: int | None = None,
) -> Change:
    """Refund `amount_minor` (all that is left, when None) of a paid order at its provider, then
    apply what the provider says: the credits are taken back by the same path as a refund made
    at the provider. A retry of the same refund does not refund twice."""
    order = await orders.get(engine, order_id)
    if not order.paid or order.provider_ref is None:
        raise NotRefundable(f"Order {order_id} is {order.state}: there is nothing to refund.")
    payment = await provider.payment(order.provider_ref)
    left = payment.amount_minor - payment.refunded_minor
    amount = left if amount_minor is None else amount_minor
    if amount <= 0 or amount > left:
        raise NotRefundable(f"Order {order_id} has {left} left to refund, not {amount}.")
    key = f"refund:{order.id}:{payment.refunded_minor}:{amount}"
    await provider.refund(payment, amount, key)
    return await apply(engine, ledger, order.id, await provider.payment(order.provider_ref))


@dataclass
class Reconciliation:
    checked: int = 0
    changed: list[Change] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)  # orders the ledger disagrees with
    unreachable: list[str] = field(default_factory=list)  # providers that could not be asked


async def reconcile(
    engine: AsyncEngine,
    ledger: Ledger,
    providers: Mapping[str, PaymentProvider],
    days: float = 3.0,
) -> Reconciliation:
    """Ask each provider about every checkout of the last `days` (and every order of ours still
    open), apply what it says, and list the orders whose ledger entries disagree with them."""
    since = datetime.now(UTC) - timedelta(days=days)
    done = Reconciliation()
    ours = await orders.since(engine, since)
    for name, provider in providers.items():
        try:
            refs = set(await provider.recent(since))
        except ProviderDown as exc:
            done.unreachable.append(f"{name}: {exc}")
            continue
        refs |= {o.provider_ref for o in ours if o.provider == name and o.provider_ref}
        for ref in sorted(refs):
            order = await orders.find(engine, name, ref)
            if order is None:
                continue  # a checkout of another product on the same account
            try:
                change = await apply(engine, ledger, order.id, await provider.confirm(ref))
            except ProviderDown as exc:
                done.unreachable.append(f"{name} {ref}: {exc}")
                continue
            done.checked += 1
            if change.news:
                done.changed.append(change)
    for order in await orders.since(engine, since):
        if problem := await disagreement(ledger, order):
            done.drift.append(problem)
    return done


async def disagreement(ledger: Ledger, order: Order) -> str | None:
    """How the ledger disagrees with the order, if it does: a paid order without its grant, or
    an unpaid one with it."""
    granted = await ledger.transfer(order.grant_id) if order.provider_ref else None
    expected = order.units if order.credited is None else order.credited
    if order.paid and (granted is None or granted.amount != expected):
        return f"order {order.id} is {order.state} but its credits were not granted"
    if not order.paid and granted is not None:
        return f"order {order.id} is {order.state} but {granted.transfer_id} granted credits"
    return None


async def reconcile_forever(
    engine: AsyncEngine,
    ledger: Ledger,
    providers: Mapping[str, PaymentProvider],
    every_s: float,
    days: float,
    tell: Callable[[Change], Awaitable[None]],
) -> None:
    """Reconcile every `every_s` seconds, for as long as the app runs. A round that fails is
    logged and the next one runs as usual; drift is logged as an error for an administrator."""
    while True:
        await asyncio.sleep(every_s)
        try:
            done = await reconcile(engine, ledger, providers, days)
            for change in done.changed:
                await tell(change)
            for problem in done.drift:
                log.error("payments: reconciliation found drift: %s", problem)
            for name in done.unreachable:
                log.warning("payments: reconciliation could not ask %s", name)
            log.info("payments: reconciled %d checkouts, %d changed, %d drift",
                     done.checked, len(done.changed), len(done.drift))  # fmt: skip
        except Exception:
            log.exception("payments: a reconciliation round failed; the next runs as usual")


def log_end(task: asyncio.Task[None]) -> None:
    """`reconcile_forever` catches every failure of a round; if it ends anyway, say so (webhooks
    still apply, and `python -m payments reconcile` still runs by hand)."""
    if not task.cancelled():
        log.error("payments: periodic reconciliation stopped", exc_info=task.exception())

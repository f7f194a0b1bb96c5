"""Applying what a provider says of a checkout to its order and to the ledger, exactly once.

The webhook, the return page and reconciliation all call `apply` with the provider's
authoritative `Payment`, at any time, in any order, any number of times, at once:

- Every ledger effect has an id of its own, fixed by the provider's facts alone: the purchase
  `<provider>:<checkout>`, each refund `refund:<provider>:<refund id>` (its share of the credits
  worked out from the refunds before it, which never change), each dispute
  `dispute:<provider>:<dispute id>` and, if won, `dispute-won:<provider>:<dispute id>`. Whoever
  posts one first posts it; the ledger recognises every repeat. So a process killed after the
  ledger wrote and before the order did is completed by the next call, granting nothing twice.
- The order's row is then written only if it is still the version that was read (optimistic:
  nothing is locked while the ledger writes); a caller that lost the race reads again and finds
  the effects done. Only the call that moved the order says it granted, took or gave back.
- A notification (payments/inbox.py) is marked applied in the same transaction as the order's
  change: one already applied is not applied again.

A checkout whose amount, currency or order id at the provider is not the order's is never
credited: the order records the problem and it is logged for an administrator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from credits.ledger import System
from credits.store import Ledger
from payments import orders
from payments.orders import MOVES, Order
from payments.provider import Notice, Payment

log = logging.getLogger("payments")


@dataclass(frozen=True)
class Change:
    """What one `apply` did, for the person to be told."""

    order: Order  # as it is now
    was: str  # its state before
    was_status: str | None = None  # what its provider had said before
    granted: int = 0  # units credited by this call
    taken: int = 0  # units taken back by this call (refunds, disputes), owed included
    returned: int = 0  # units given back (a dispute won)
    covered: int = 0  # of the units granted, those that went to what the person owed
    repeat: bool = False  # the event had been applied before: nothing was done

    @property
    def news(self) -> bool:
        """Whether the person has something to be told."""
        processing = self.order.provider_status == "processing" != self.was_status
        moved = self.order.state != self.was or processing
        return not self.repeat and (moved or bool(self.granted or self.taken or self.returned))


async def apply(
    engine: AsyncEngine,
    ledger: Ledger,
    order_id: str,
    payment: Payment,
    event: Notice | None = None,
) -> Change:
    """Bring order `order_id` and the ledger in line with `payment` (see the module's text);
    `event`, a stored notification (payments/inbox.py), is marked applied with the change."""
    while True:  # each round, one of the callers racing on this order wins
        order = await orders.get(engine, order_id)
        change = await _settle(ledger, order, payment)
        try:
            if await _write(engine, order, change.order, event):
                return change
        except _AppliedMeanwhile:
            return Change(await orders.get(engine, order_id), order.state, repeat=True)


class _AppliedMeanwhile(Exception):
    """The event was applied by another caller: this one's order change is undone."""


async def _write(engine: AsyncEngine, seen: Order, now: Order, event: Notice | None) -> bool:
    """The order as `now` says, if it is still as `seen` (its version); and the event applied."""
    moment = datetime.now(UTC)
    async with engine.begin() as conn:
        done = await conn.execute(
            update(orders.orders)
            .where((orders.orders.c.id == seen.id) & (orders.orders.c.version == seen.version))
            .values(
                state=now.state, provider_status=now.provider_status, payment_ref=now.payment_ref,
                receipt_url=now.receipt_url, refunded_minor=now.refunded_minor,
                dispute=now.dispute, transfer_id=now.transfer_id, problem=now.problem,
                credited=now.credited,
                updated_at=moment, version=seen.version + 1,
            )
        )  # fmt: skip
        if done.rowcount != 1:
            return False
        if event is not None:
            marked = await conn.execute(
                update(orders.events)
                .where(
                    (orders.events.c.provider == seen.provider)
                    & (orders.events.c.event_id == event.event_id)
                    & orders.events.c.applied_at.is_(None)
                )
                .values(applied_at=moment, order_id=seen.id, claimed_until=None)
            )
            if marked.rowcount != 1:
                raise _AppliedMeanwhile
    return True


async def _settle(ledger: Ledger, order: Order, payment: Payment) -> Change:
    """The ledger effects `payment` calls for on `order`, and the order as it is then."""
    problem = _mismatch(order, payment)
    if problem:
        log.error("payments: order %s not credited: %s", order.id, problem)
        state = "failed" if order.state in MOVES["failed"] else order.state
        return Change(
            replace(order, state=state, problem=problem), order.state, order.provider_status
        )
    now = replace(
        order,
        provider_status=payment.status,
        payment_ref=payment.payment_ref or order.payment_ref,
        receipt_url=payment.receipt_url or order.receipt_url,
    )
    if payment.status != "paid":
        state = {"expired": "expired", "failed": "failed"}.get(payment.status, "pending")
        if state != order.state and order.state not in MOVES[state]:
            return Change(order, order.state, order.provider_status)  # paid, expired, failed stay
        return Change(replace(now, state=state), order.state, order.provider_status)

    granted = covered = 0
    if not order.paid:
        grant = order.grant_id
        given = await ledger.grant(
            order.account, order.units, grant, code="purchase",
            metadata={"order": order.id, "pack": order.pack},
            source=orders.SOURCE[order.provider],
        )  # fmt: skip
        granted = order.units
        cover = await ledger.transfer(f"owed:{given.pk}")  # credits/ops.py cover_owed
        covered = cover.amount if cover is not None else 0
        now = replace(now, transfer_id=grant, credited=order.units)
    taken = await _take_back_refunds(ledger, order, payment)
    dispute_taken, returned = await _follow_disputes(ledger, order, payment)
    refunded = max(order.refunded_minor, payment.refunded_minor)
    latest = payment.disputes[-1].status if payment.disputes else order.dispute
    now = replace(
        now, refunded_minor=refunded, dispute=latest, state=_paid_state(now, refunded, latest)
    )
    return Change(
        now, order.state, order.provider_status, granted, taken + dispute_taken, returned, covered
    )


def _mismatch(order: Order, payment: Payment) -> str | None:
    if payment.order_id is not None and payment.order_id != order.id:
        return f"the provider's checkout {payment.ref} belongs to order {payment.order_id}"
    if order.provider_ref is not None and payment.ref != order.provider_ref:
        return f"checkout {payment.ref} is not this order's ({order.provider_ref})"
    if payment.status in ("paid", "processing") and (
        payment.currency != order.currency or payment.amount_minor != order.amount_minor
    ):
        return (
            f"charged {payment.amount_minor} {payment.currency}, the order is for "
            f"{order.amount_minor} {order.currency}"
        )
    return None


def _share(order: Order, minor: int) -> int:
    """The units `minor` of the order's price bought (a full refund is all of them)."""
    return order.units * min(minor, order.amount_minor) // order.amount_minor


async def _take_back_refunds(ledger: Ledger, order: Order, payment: Payment) -> int:
    taken, before = 0, 0
    for refund in payment.refunds:
        after = before + refund.amount_minor
        if after > order.refunded_minor:  # not applied yet (or applied by a call that died)
            amount = _share(order, after) - _share(order, before)
            if amount:
                await ledger.claw_back(
                    order.account, amount, f"refund:{order.provider}:{refund.id}", "refund",
                    {"order": order.id, "refund": refund.id},
                )  # fmt: skip
                taken += amount
        before = after
    return taken


async def _follow_disputes(ledger: Ledger, order: Order, payment: Payment) -> tuple[int, int]:
    """Each dispute takes back its share when it opens, and gives it back if won. Returns what
    was taken and given back that the order did not know of yet."""
    for case in payment.disputes:
        amount = _share(order, case.amount_minor)
        if not amount:
            continue
        await ledger.claw_back(
            order.account, amount, f"dispute:{order.provider}:{case.id}", "dispute",
            {"order": order.id, "dispute": case.id},
        )  # fmt: skip
        if case.status == "won":
            await ledger.grant(
                order.account, amount, f"dispute-won:{order.provider}:{case.id}",
                code="dispute_won", metadata={"order": order.id, "dispute": case.id},
                source=System.CLAWBACKS,
            )  # fmt: skip
    if not payment.disputes:
        return 0, 0
    latest = payment.disputes[-1]
    share = _share(order, latest.amount_minor)
    taken = share if order.dispute is None else 0
    returned = share if latest.status == "won" and order.dispute != "won" else 0
    return taken, returned


def _paid_state(order: Order, refunded_minor: int, dispute: str | None) -> str:
    if refunded_minor >= order.amount_minor:
        return "refunded"
    if dispute is not None:
        return {"open": "disputed", "won": "dispute_won", "lost": "dispute_lost"}[dispute]
    return "partially_refunded" if refunded_minor else "paid"

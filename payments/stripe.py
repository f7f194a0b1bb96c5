"""Stripe Checkout, through Stripe's official SDK (its `StripeClient`, async calls over httpx).

A checkout is a Checkout Session in payment mode for one pack: our order id as its
`client_reference_id` and in the metadata of the session and of its PaymentIntent (session
metadata is not copied to the payment, and refunds and disputes are about the payment), an
idempotency key per order. Card and the delayed methods Stripe offers (`payment_status` stays
`unpaid` until they clear) both end here.

Notifications are verified with `construct_event` on the raw body, within Stripe's tolerance
(300 s); later (payments/inbox.py) they are mapped to the checkout they are about: a session's
own id, or the session of the PaymentIntent that a charge, refund or dispute belongs to. What
happened is then read back from Stripe (`payment`): the session with its payment, latest charge
(the receipt) and refunds in one call, and the disputes when there are any.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import stripe

from payments.errors import ForgedNotice, ProviderDown, UnknownOrder
from payments.orders import Order
from payments.packs import Pack
from payments.provider import (
    Checkout,
    Dispute,
    DisputeCase,
    Notice,
    Payment,
    Refund,
    ReturnUrls,
    Status,
)

API_VERSION = "2026-10-28.clover"  # webhooks and calls speak this version
SESSION_EVENTS = {
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
}
PAYMENT_EVENTS = {"charge.refunded", "charge.dispute.created", "charge.dispute.closed"}


class StripeCheckout:
    name = "stripe"

    def __init__(
        self,
        secret_key: str,
        webhook_secret: str,
        api_base: str | None = None,
        automatic_tax: bool = False,
    ) -> None:
        addresses: Any = {"api": api_base} if api_base else {}
        self.client = stripe.StripeClient(
            secret_key, base_addresses=addresses, stripe_version=API_VERSION,
            max_network_retries=2 if api_base is None else 0,
        )  # fmt: skip
        self.webhook_secret = webhook_secret
        self.automatic_tax = automatic_tax

    async def start(self, order: Order, pack: Pack, urls: ReturnUrls) -> Checkout:
        sep = "&" if "?" in urls.success else "?"
        params: Any = {
            "mode": "payment",
            "client_reference_id": order.id,
            "line_items": [{
                "quantity": 1,
                "price_data": {
                    "currency": order.currency,
                    "unit_amount": order.amount_minor,
                    "product_data": {"name": f"{pack.describe()}"},
                },
            }],
            "metadata": {"order": order.id, "pack": pack.id},
            "payment_intent_data": {"metadata": {"order": order.id}},
            "success_url": f"{urls.success}{sep}session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": urls.cancel,
        }  # fmt: skip
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        session = await self._call(
            self.client.v1.checkout.sessions.create_async(
                params, {"idempotency_key": f"checkout:{order.id}"}
            )
        )
        return Checkout(session.id, session.url)

    async def verify(self, body: bytes, headers: Mapping[str, str]) -> Notice:
        signature = headers.get("stripe-signature")
        try:
            event = self.client.construct_event(body, signature, self.webhook_secret)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise ForgedNotice(f"Stripe signature refused: {exc}") from None
        return Notice(event.id, event.type)

    async def checkout_of(self, body: bytes) -> str | None:
        event = json.loads(body)
        thing = event["data"]["object"]
        if event["type"] in SESSION_EVENTS:
            return str(thing["id"])
        intent = thing.get("payment_intent")
        if event["type"] in PAYMENT_EVENTS and isinstance(intent, str):
            return await self._session_of(intent)
        return None

    async def payment(self, ref: str) -> Payment:
        """One call in the usual case: the session with its PaymentIntent, the intent's latest
        charge and that charge's refunds expanded; the lists only when there are more refunds
        than came with it, or a dispute."""
        session = await self._call(
            self.client.v1.checkout.sessions.retrieve_async(
                ref, {"expand": ["payment_intent.latest_charge.refunds"]}
            )
        )
        intent = session.payment_intent
        intent_id = intent.id if isinstance(intent, stripe.PaymentIntent) else intent
        charge = intent.latest_charge if isinstance(intent, stripe.PaymentIntent) else None
        status = _status(session.status, session.payment_status)
        refunds: tuple[Refund, ...] = ()
        disputes: tuple[DisputeCase, ...] = ()
        receipt = None
        if isinstance(charge, stripe.Charge):
            receipt = charge.receipt_url if charge.status == "succeeded" else None
            if status == "processing" and charge.status == "failed":
                status = "failed"
            listed = charge.refunds
            found = (
                list(listed.data)[::-1]  # newest first, as every Stripe list
                if listed is not None and not listed.has_more
                else await self._list(self.client.v1.refunds, intent_id)
            )
            refunds = tuple(
                Refund(r.id, r.amount) for r in found if r.status in ("succeeded", "pending")
            )
            if charge.disputed:
                disputes = tuple(
                    DisputeCase(d.id, d.amount, _dispute(d.status))
                    for d in await self._list(self.client.v1.disputes, intent_id)
                )
        return Payment(
            session.id, session.client_reference_id, status, session.currency,
            session.amount_total or 0, refunds, disputes, receipt, intent_id,
        )  # fmt: skip

    async def _list(self, service: Any, intent_id: str) -> list[Any]:
        """Every object of `service` under the PaymentIntent, oldest first."""
        found: list[Any] = []
        params: Any = {"payment_intent": intent_id, "limit": 100}
        while True:
            page = await self._call(service.list_async(params))
            found += page.data
            if not page.has_more or not page.data:
                return found[::-1]  # Stripe lists newest first, in a stable order
            params["starting_after"] = page.data[-1].id

    async def confirm(self, ref: str) -> Payment:
        return await self.payment(ref)  # Stripe captures by itself

    async def refund(self, payment: Payment, amount_minor: int, key: str) -> None:
        if payment.payment_ref is None:
            raise UnknownOrder(f"Stripe checkout {payment.ref} has no payment to refund.")
        await self._call(
            self.client.v1.refunds.create_async(
                {"payment_intent": payment.payment_ref, "amount": amount_minor,
                 "metadata": {"order": payment.order_id or ""}},
                {"idempotency_key": key},
            )
        )  # fmt: skip

    async def recent(self, since: datetime) -> list[str]:
        refs: list[str] = []
        params: Any = {"created": {"gte": int(since.timestamp())}, "limit": 100}
        while True:
            page = await self._call(self.client.v1.checkout.sessions.list_async(params))
            refs += [s.id for s in page.data]
            if not page.has_more or not page.data:
                return refs
            params["starting_after"] = page.data[-1].id

    async def _session_of(self, intent_id: str) -> str | None:
        page = await self._call(
            self.client.v1.checkout.sessions.list_async({"payment_intent": intent_id, "limit": 1})
        )
        return page.data[0].id if page.data else None

    @staticmethod
    async def _call(call: Any) -> Any:
        try:
            return await call
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                raise UnknownOrder(f"Stripe has no such checkout: {exc.user_message}") from None
            raise ProviderDown(f"Stripe refused the request: {exc.user_message}") from exc
        except stripe.StripeError as exc:
            raise ProviderDown(f"Stripe failed: {exc.user_message or type(exc).__name__}") from exc


def _status(session_status: str | None, payment_status: str | None) -> Status:
    if session_status == "expired":
        return "expired"
    if session_status == "complete":
        return "paid" if payment_status in ("paid", "no_payment_required") else "processing"
    return "open"


def _dispute(status: str) -> Dispute:
    """A Stripe dispute's standing: won (or an inquiry closed), lost, or still open."""
    if status in ("won", "warning_closed"):
        return "won"
    return "lost" if status == "lost" else "open"

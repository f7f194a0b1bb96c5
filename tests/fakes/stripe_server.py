"""Stripe's API on loopback, as far as the app and Stripe's official SDK use it: Checkout Sessions
(create with an idempotency key, retrieve, list by creation time or PaymentIntent, expire),
charges and disputes listed by PaymentIntent, refunds; and a hosted checkout page a browser can
pay on, which redirects to the success URL and sends the signed webhooks Stripe would.

The test drives what happens at Stripe from outside: `pay`, `clear` (a delayed method settles or
fails), `refund`, `dispute`, `close_dispute`, `expire`. Every event it made is kept in `events`;
`deliver` sends one (again, or altered) to the app, signed as Stripe signs.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import stripe

from tests.fakes.loopback import JsonHandler, Loopback


def form_decode(body: str) -> dict[str, Any]:
    """`a[b][0][c]=1` as Stripe's SDK encodes it, back into nested dicts and lists."""
    out: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = out
        for part, following in zip(parts, [*parts[1:], None], strict=True):
            if following is None:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(out)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


@dataclass
class Session:
    id: str
    params: dict[str, Any]
    created: int
    status: str = "open"
    payment_status: str = "unpaid"
    payment_intent: str | None = None

    @property
    def amount(self) -> int:
        return sum(
            int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1))
            for i in self.params["line_items"]
        )

    def body(self, url: str) -> dict[str, Any]:
        return {
            "id": self.id, "object": "checkout.session", "created": self.created,
            "status": self.status, "payment_status": self.payment_status,
            "amount_total": self.amount, "currency": self.params["line_items"][0]["price_data"][
                "currency"],
            "client_reference_id": self.params.get("client_reference_id"),
            "metadata": self.params.get("metadata", {}), "payment_intent": self.payment_intent,
            "url": f"{url}/checkout/{self.id}" if self.status == "open" else None,
            "success_url": self.params["success_url"], "cancel_url": self.params["cancel_url"],
            "mode": "payment",
        }  # fmt: skip


@dataclass
class Charge:
    id: str
    payment_intent: str
    amount: int
    currency: str
    status: str = "succeeded"
    created: int = field(default_factory=lambda: int(time.time()))
    refunds: list[dict[str, Any]] = field(default_factory=list)
    disputes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def amount_refunded(self) -> int:
        return sum(r["amount"] for r in self.refunds)

    def add_refund(self, amount: int) -> dict[str, Any]:
        made = {
            "id": f"re_{secrets.token_hex(8)}", "object": "refund", "amount": amount,
            "status": "succeeded", "charge": self.id, "payment_intent": self.payment_intent,
            "created": int(time.time()), "currency": self.currency,
        }  # fmt: skip
        self.refunds.insert(0, made)  # Stripe lists newest first
        return made

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "charge", "payment_intent": self.payment_intent,
            "created": self.created,
            "amount": self.amount, "currency": self.currency, "status": self.status,
            "amount_refunded": self.amount_refunded, "refunded": self.amount_refunded >= self.amount,
            "disputed": bool(self.disputes),
            "receipt_url": f"https://pay.stripe.com/receipts/{self.id}",
        }  # fmt: skip


class FakeStripe:
    def __init__(self, webhook_secret: str, api_key: str = "sk_test_fake") -> None:
        self.webhook_secret, self.api_key = webhook_secret, api_key
        self.webhook_url: str | None = None  # where events go; None: kept, not sent
        self.sessions: dict[str, Session] = {}
        self.charges: dict[str, Charge] = {}  # by PaymentIntent
        self.refunds: dict[str, dict[str, Any]] = {}  # by idempotency key
        self.events: list[dict[str, Any]] = []
        self.idempotent: dict[str, dict[str, Any]] = {}
        self.down = False  # answer every API call with 500
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self.loopback = Loopback(self._handler())
        self.url = self.loopback.url

    def start(self) -> FakeStripe:
        self.loopback.start()
        return self

    def stop(self) -> None:
        self.loopback.stop()

    # What happens at Stripe ---------------------------------------------------------------

    def pay(self, session_id: str, delayed: bool = False, send: bool = True) -> dict[str, Any]:
        """The person pays: by card (paid at once) or by a delayed method (processing)."""
        with self.lock:
            s = self.sessions[session_id]
            if s.status != "open":
                raise ValueError(f"session {session_id} is {s.status}")
            s.status = "complete"
            s.payment_intent = f"pi_{secrets.token_hex(8)}"
            currency = s.body(self.url)["currency"]
            charge = Charge(
                f"ch_{secrets.token_hex(8)}", s.payment_intent, s.amount, currency,
                "pending" if delayed else "succeeded",
            )  # fmt: skip
            self.charges[s.payment_intent] = charge
            s.payment_status = "unpaid" if delayed else "paid"
            return self.event("checkout.session.completed", s.body(self.url), send)

    def clear(self, session_id: str, ok: bool = True, send: bool = True) -> dict[str, Any]:
        """A delayed payment settles (or fails)."""
        with self.lock:
            s = self.sessions[session_id]
            assert s.payment_intent is not None
            self.charges[s.payment_intent].status = "succeeded" if ok else "failed"
            s.payment_status = "paid" if ok else "unpaid"
            kind = "succeeded" if ok else "failed"
            return self.event(f"checkout.session.async_payment_{kind}", s.body(self.url), send)

    def refund(self, session_id: str, amount: int, send: bool = True) -> dict[str, Any]:
        """A refund made in Stripe's dashboard."""
        with self.lock:
            charge = self._charge_of(session_id)
            charge.add_refund(min(amount, charge.amount - charge.amount_refunded))
            return self.event("charge.refunded", charge.body(), send)

    def dispute(self, session_id: str, send: bool = True) -> dict[str, Any]:
        with self.lock:
            charge = self._charge_of(session_id)
            found = {
                "id": f"dp_{secrets.token_hex(8)}", "object": "dispute", "charge": charge.id,
                "payment_intent": charge.payment_intent, "amount": charge.amount,
                "status": "needs_response", "created": int(time.time()),
                "currency": charge.currency,
            }  # fmt: skip
            charge.disputes.insert(0, found)
            return self.event("charge.dispute.created", found, send)

    def close_dispute(self, session_id: str, won: bool, send: bool = True) -> dict[str, Any]:
        with self.lock:
            found = self._charge_of(session_id).disputes[0]
            found["status"] = "won" if won else "lost"
            return self.event("charge.dispute.closed", dict(found), send)

    def expire(self, session_id: str, send: bool = True) -> dict[str, Any]:
        with self.lock:
            s = self.sessions[session_id]
            s.status = "expired"
            return self.event("checkout.session.expired", s.body(self.url), send)

    def _charge_of(self, session_id: str) -> Charge:
        intent = self.sessions[session_id].payment_intent
        assert intent is not None, "not paid"
        return self.charges[intent]

    def expanded(self, s: Session, expand: list[str]) -> dict[str, Any]:
        """A session as retrieved, with `payment_intent.latest_charge.refunds` expanded if asked
        (the only expansion the app asks for; Stripe embeds ten refunds, newest first)."""
        body = s.body(self.url)
        if "payment_intent.latest_charge.refunds" not in expand or s.payment_intent is None:
            return body
        charge = self.charges[s.payment_intent]
        status = {"succeeded": "succeeded", "pending": "processing"}.get(charge.status)
        body["payment_intent"] = {
            "id": s.payment_intent, "object": "payment_intent",
            "status": status or "requires_payment_method",
            "latest_charge": charge.body() | {"refunds": {
                "object": "list", "data": charge.refunds[:10],
                "has_more": len(charge.refunds) > 10, "url": "/v1/refunds",
            }},
        }  # fmt: skip
        return body

    # Events -------------------------------------------------------------------------------

    def event(self, kind: str, thing: dict[str, Any], send: bool = True) -> dict[str, Any]:
        made = {
            "id": f"evt_{secrets.token_hex(12)}", "object": "event", "type": kind,
            "api_version": "2026-10-28.clover", "created": int(time.time()),
            "data": {"object": thing}, "livemode": False, "pending_webhooks": 1,
        }  # fmt: skip
        self.events.append(made)
        if send and self.webhook_url:
            threading.Thread(target=self.deliver, args=(made,), daemon=True).start()
        return made

    def signed(
        self, event: dict[str, Any], secret: str | None = None, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event)
        header = stripe.WebhookSignature.generate_signature_header(
            body, secret or self.webhook_secret, timestamp
        )
        return body.encode(), {"Stripe-Signature": header, "Content-Type": "application/json"}

    def deliver(self, event: dict[str, Any], **signing: Any) -> int:
        """Send `event` to the app as Stripe does; the HTTP status it answered."""
        assert self.webhook_url
        body, headers = self.signed(event, **signing)
        try:
            return httpx.post(
                self.webhook_url, content=body, headers=headers, timeout=30
            ).status_code
        except httpx.HTTPError:
            return 0

    # The API ------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(JsonHandler):
            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self.answer({"error": {"type": "invalid_request_error",
                                           "message": "Invalid API Key provided"}}, 401)  # fmt: skip
                    return False
                if fake.down:
                    self.answer({"error": {"type": "api_error", "message": "down"}}, 500)
                    return False
                return True

            def _missing(self, what: str) -> None:
                self.answer({"error": {"type": "invalid_request_error", "code": "resource_missing",
                                       "message": f"No such {what}"}}, 404)  # fmt: skip

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = form_decode(url.query)
                if m := re.fullmatch(r"/checkout/(cs_\w+)", url.path):
                    self._page(m[1])
                    return
                if not self._authorised():
                    return
                fake.calls.append(("GET", url.path))
                with fake.lock:
                    if m := re.fullmatch(r"/v1/checkout/sessions/(\w+)", url.path):
                        s = fake.sessions.get(m[1])
                        if s is None:
                            self._missing("checkout.session")
                            return
                        self.answer(fake.expanded(s, query.get("expand", [])))
                    elif url.path == "/v1/checkout/sessions":
                        self._list_sessions(query)
                    elif url.path == "/v1/charges":
                        c = fake.charges.get(query.get("payment_intent", ""))
                        self._list([c.body()] if c else [], url.path)
                    elif url.path == "/v1/refunds":
                        c = fake.charges.get(query.get("payment_intent", ""))
                        self._list(list(c.refunds) if c else [], url.path)
                    elif url.path == "/v1/disputes":
                        c = fake.charges.get(query.get("payment_intent", ""))
                        self._list(list(c.disputes) if c else [], url.path)
                    else:
                        self._missing(url.path)

            def _list_sessions(self, query: dict[str, Any]) -> None:
                found = sorted(fake.sessions.values(), key=lambda s: (-s.created, s.id))
                if "payment_intent" in query:
                    found = [s for s in found if s.payment_intent == query["payment_intent"]]
                if "created" in query:
                    found = [s for s in found if s.created >= int(query["created"]["gte"])]
                if after := query.get("starting_after"):
                    ids = [s.id for s in found]
                    found = found[ids.index(after) + 1 :] if after in ids else []
                limit = int(query.get("limit", 10))
                self._list([s.body(fake.url) for s in found[:limit]], "/v1/checkout/sessions",
                           more=len(found) > limit)  # fmt: skip

            def _list(self, data: list[Any], url: str, more: bool = False) -> None:
                self.answer({"object": "list", "data": data, "has_more": more, "url": url})

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if m := re.fullmatch(r"/checkout/(cs_\w+)/pay", url.path):
                    self._paid_on_page(m[1], form_decode(raw))
                    return
                if not self._authorised():
                    return
                fake.calls.append(("POST", url.path))
                key = self.headers.get("Idempotency-Key")
                with fake.lock:
                    if key and key in fake.idempotent:
                        self.answer(fake.idempotent[key])
                        return
                    params = form_decode(raw)
                    if url.path == "/v1/checkout/sessions":
                        s = Session(f"cs_test_{secrets.token_hex(12)}", params, int(time.time()))
                        fake.sessions[s.id] = s
                        answer = s.body(fake.url)
                    elif m := re.fullmatch(r"/v1/checkout/sessions/(\w+)/expire", url.path):
                        answer = fake.expire(m[1])["data"]["object"]
                    elif url.path == "/v1/refunds":
                        answer = self._refund(params)
                        if answer is None:
                            return
                    else:
                        self._missing(url.path)
                        return
                    if key:
                        fake.idempotent[key] = answer
                    self.answer(answer)

            def _refund(self, params: dict[str, Any]) -> dict[str, Any] | None:
                charge = fake.charges.get(params.get("payment_intent", ""))
                if charge is None:
                    self._missing("payment_intent")
                    return None
                amount = int(params.get("amount", charge.amount - charge.amount_refunded))
                if amount <= 0 or charge.amount_refunded + amount > charge.amount:
                    self.answer({"error": {"type": "invalid_request_error",
                                           "message": "Refund exceeds the charge"}}, 400)  # fmt: skip
                    return None
                refund = charge.add_refund(amount)
                fake.event("charge.refunded", charge.body())
                return refund

            def _page(self, session_id: str) -> None:
                s = fake.sessions.get(session_id)
                if s is None or s.status != "open":
                    self.send_error(404)
                    return
                name = html.escape(s.params["line_items"][0]["price_data"]["product_data"]["name"])
                amount = f"{s.amount / 100:.2f} {s.body(fake.url)['currency'].upper()}"
                page = (
                    f"<!doctype html><title>Stripe Checkout</title><h1>{name}</h1>"
                    f"<p id=amount>{amount}</p>"
                    f"<form method=post action=/checkout/{s.id}/pay>"
                    "<button name=method value=card id=pay-card>Pay by card</button>"
                    "<button name=method value=bank id=pay-bank>Pay by bank transfer</button>"
                    "</form>"
                ).encode()
                self.html(page)

            def _paid_on_page(self, session_id: str, form: dict[str, Any]) -> None:
                try:
                    fake.pay(session_id, delayed=form.get("method") == "bank")
                except (KeyError, ValueError):
                    self.send_error(404)
                    return
                s = fake.sessions[session_id]
                self.send_response(303)
                back = s.params["success_url"].replace("{CHECKOUT_SESSION_ID}", s.id)
                self.send_header("Location", back)
                self.end_headers()

        return Handler

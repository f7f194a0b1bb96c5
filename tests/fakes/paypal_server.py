"""PayPal's REST API on loopback, as far as the app and `paypal-server-sdk` use it: the OAuth
token, Orders v2 (create with `PayPal-Request-Id`, get, capture), captures (get, refund), the
disputes list, verify-webhook-signature; and a hosted approval page a browser can pay on, which
redirects to the return URL and sends the webhooks PayPal would, signed as PayPal signs them
(RSA-SHA256 over `id|time|webhook id|crc32(body)`, with a certificate of its own).

The test drives what happens at PayPal from outside: `approve`, `settle_capture` (a pending
capture completes or is denied), `refund`, `dispute`, `resolve_dispute`. Every event is kept in
`events`; `deliver` sends one to the app.
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
import threading
import urllib.parse
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.fakes.loopback import JsonHandler, Loopback

CERT_URL = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-fake-loopback"


def now_text(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PayPalOrder:
    id: str
    body: dict[str, Any]
    status: str = "PAYER_ACTION_REQUIRED"
    captures: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    pending_capture: bool = False  # the next capture is PENDING (an eCheck, a review)

    @property
    def unit(self) -> dict[str, Any]:
        return dict(self.body["purchase_units"][0])

    def view(self, url: str) -> dict[str, Any]:
        unit = self.unit | {"payments": {"captures": self.captures, "refunds": self.refunds}}
        return {
            "id": self.id, "intent": "CAPTURE", "status": self.status, "purchase_units": [unit],
            "links": [{"rel": "payer-action", "href": f"{url}/checkoutnow?token={self.id}",
                       "method": "GET"}],
        }  # fmt: skip


class FakePayPal:
    def __init__(self, client_id: str, client_secret: str, webhook_id: str) -> None:
        self.client_id, self.client_secret, self.webhook_id = client_id, client_secret, webhook_id
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts")])
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.now(UTC) - timedelta(days=1))
            .not_valid_after(datetime.now(UTC) + timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.webhook_url: str | None = None
        self.orders: dict[str, PayPalOrder] = {}
        self.disputes: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.tokens: set[str] = set()
        self.idempotent: dict[str, tuple[int, dict[str, Any]]] = {}
        self.down = False
        self.lock = threading.RLock()
        self.loopback = Loopback(self._handler())
        self.url = self.loopback.url

    def start(self) -> FakePayPal:
        self.loopback.start()
        return self

    def stop(self) -> None:
        self.loopback.stop()

    # What happens at PayPal ---------------------------------------------------------------

    def approve(self, order_id: str, send: bool = True) -> dict[str, Any]:
        with self.lock:
            order = self.orders[order_id]
            if order.status != "PAYER_ACTION_REQUIRED":
                raise ValueError(f"order {order_id} is {order.status}")
            order.status = "APPROVED"
            return self.event("CHECKOUT.ORDER.APPROVED", order.view(self.url), send)

    def settle_capture(self, order_id: str, ok: bool = True, send: bool = True) -> dict[str, Any]:
        with self.lock:
            capture = self.orders[order_id].captures[0]
            capture["status"] = "COMPLETED" if ok else "DECLINED"
            kind = "COMPLETED" if ok else "DENIED"
            return self.event(f"PAYMENT.CAPTURE.{kind}", dict(capture), send)

    def refund(self, order_id: str, value: str, send: bool = True) -> dict[str, Any]:
        with self.lock:
            made = self._refund(self.orders[order_id], value)
            return self.event("PAYMENT.CAPTURE.REFUNDED", made, send)

    def dispute(self, order_id: str, send: bool = True) -> dict[str, Any]:
        with self.lock:
            capture = self.orders[order_id].captures[0]
            made = {
                "dispute_id": f"PP-D-{secrets.randbelow(10**8)}", "create_time": now_text(),
                "status": "OPEN", "reason": "UNAUTHORISED",
                "dispute_amount": dict(capture["amount"]),
                "disputed_transactions": [{"seller_transaction_id": capture["id"]}],
            }  # fmt: skip
            self.disputes.append(made)
            return self.event("CUSTOMER.DISPUTE.CREATED", dict(made), send)

    def resolve_dispute(self, order_id: str, won: bool, send: bool = True) -> dict[str, Any]:
        with self.lock:
            capture_id = self.orders[order_id].captures[0]["id"]
            found = next(d for d in self.disputes if self._about(d, capture_id))
            found["status"] = "RESOLVED"
            code = "RESOLVED_SELLER_FAVOUR" if won else "RESOLVED_BUYER_FAVOUR"
            found["dispute_outcome"] = {"outcome_code": code}
            return self.event("CUSTOMER.DISPUTE.RESOLVED", dict(found), send)

    @staticmethod
    def _about(dispute: dict[str, Any], capture_id: str) -> bool:
        return any(
            t["seller_transaction_id"] == capture_id for t in dispute["disputed_transactions"]
        )

    def _capture(self, order: PayPalOrder) -> dict[str, Any]:
        unit = order.unit
        capture = {
            "id": f"CAP{secrets.token_hex(6).upper()}", "amount": dict(unit["amount"]),
            "status": "PENDING" if order.pending_capture else "COMPLETED",
            "custom_id": unit.get("custom_id"), "create_time": now_text(),
            "supplementary_data": {"related_ids": {"order_id": order.id}},
        }  # fmt: skip
        order.captures.append(capture)
        order.status = "COMPLETED"
        kind = "PENDING" if order.pending_capture else "COMPLETED"
        self.event(f"PAYMENT.CAPTURE.{kind}", dict(capture))
        return capture

    def _refund(self, order: PayPalOrder, value: str | None) -> dict[str, Any]:
        capture = order.captures[0]
        currency = capture["amount"]["currency_code"]
        total = float(capture["amount"]["value"])
        done = sum(float(r["amount"]["value"]) for r in order.refunds)
        amount = float(value) if value is not None else total - done
        if amount <= 0 or done + amount > total + 1e-9:
            raise ValueError("refund exceeds the capture")
        made = {
            "id": f"REF{secrets.token_hex(6).upper()}", "status": "COMPLETED",
            "amount": {"currency_code": currency, "value": f"{amount:.2f}"},
            "create_time": now_text(),
            "supplementary_data": {"related_ids": {"order_id": order.id, "capture_id": capture["id"]}},
        }  # fmt: skip
        order.refunds.append(made)
        capture["status"] = "REFUNDED" if done + amount >= total - 1e-9 else "PARTIALLY_REFUNDED"
        return made

    # Events -------------------------------------------------------------------------------

    def event(self, kind: str, resource: dict[str, Any], send: bool = True) -> dict[str, Any]:
        made = {
            "id": f"WH-{secrets.token_hex(10).upper()}", "event_version": "1.0",
            "create_time": now_text(), "resource_type": kind.split(".")[1].lower(),
            "event_type": kind, "summary": kind, "resource": resource,
        }  # fmt: skip
        self.events.append(made)
        if send and self.webhook_url:
            threading.Thread(target=self.deliver, args=(made,), daemon=True).start()
        return made

    def signed(
        self,
        event: dict[str, Any],
        key: rsa.RSAPrivateKey | None = None,
        when: str | None = None,
        cert_url: str = CERT_URL,
    ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(event).encode()
        tid, when = secrets.token_hex(16), when or now_text()
        message = f"{tid}|{when}|{self.webhook_id}|{zlib.crc32(body)}".encode()
        signature = (key or self.key).sign(message, padding.PKCS1v15(), hashes.SHA256())
        return body, {
            "PAYPAL-TRANSMISSION-ID": tid, "PAYPAL-TRANSMISSION-TIME": when,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
            "PAYPAL-CERT-URL": cert_url, "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            "Content-Type": "application/json",
        }  # fmt: skip

    def deliver(self, event: dict[str, Any], **signing: Any) -> int:
        assert self.webhook_url
        body, headers = self.signed(event, **signing)
        try:
            return httpx.post(
                self.webhook_url, content=body, headers=headers, timeout=30
            ).status_code
        except httpx.HTTPError:
            return 0

    def check(self, request: dict[str, Any]) -> bool:
        """verify-webhook-signature: the event re-serialised as PayPal's own check sees it."""
        body = json.dumps(request["webhook_event"]).encode()
        message = (
            f"{request['transmission_id']}|{request['transmission_time']}|"
            f"{request['webhook_id']}|{zlib.crc32(body)}"
        ).encode()
        try:
            self.key.public_key().verify(
                base64.b64decode(request["transmission_sig"]), message, padding.PKCS1v15(),
                hashes.SHA256(),
            )  # fmt: skip
        except Exception:
            return False
        return request["webhook_id"] == self.webhook_id

    # The API ------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(JsonHandler):
            def _authorised(self) -> bool:
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                if fake.down:
                    self.answer({"name": "INTERNAL_SERVER_ERROR"}, 500)
                    return False
                if token not in fake.tokens:
                    self.answer({"error": "invalid_token"}, 401)
                    return False
                return True

            def _missing(self) -> None:
                self.answer({"name": "RESOURCE_NOT_FOUND", "message": "not found"}, 404)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/checkoutnow":
                    self._page(query.get("token", ""))
                    return
                if not self._authorised():
                    return
                with fake.lock:
                    if m := re.fullmatch(r"/v2/checkout/orders/(\w+)", url.path):
                        o = fake.orders.get(m[1])
                        self.answer(o.view(fake.url)) if o else self._missing()
                    elif m := re.fullmatch(r"/v2/payments/captures/(\w+)", url.path):
                        found = [
                            c for o in fake.orders.values() for c in o.captures if c["id"] == m[1]
                        ]
                        self.answer(found[0]) if found else self._missing()
                    elif url.path == "/v1/customer/disputes":
                        wanted = query.get("disputed_transaction_id", "")
                        self.answer({"items": [d for d in fake.disputes if fake._about(d, wanted)]})
                    else:
                        self._missing()

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if m := re.fullmatch(r"/checkoutnow/(\w+)", url.path):
                    self._approved_on_page(m[1])
                    return
                if url.path == "/v1/oauth2/token":
                    self._token()
                    return
                if not self._authorised():
                    return
                key = self.headers.get("PayPal-Request-Id")
                with fake.lock:
                    if key and (url.path, key) in fake.idempotent:
                        self.answer(*reversed(fake.idempotent[(url.path, key)]))
                        return
                    status, answer = self._act(url.path, json.loads(raw) if raw else {})
                    if key and status < 300:
                        fake.idempotent[(url.path, key)] = (status, answer)  # type: ignore[index]
                    self.answer(answer, status)

            def _act(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                if path == "/v2/checkout/orders":
                    order = PayPalOrder(f"{secrets.token_hex(8).upper()}", body)
                    fake.orders[order.id] = order
                    return 200, order.view(fake.url)
                if m := re.fullmatch(r"/v2/checkout/orders/(\w+)/capture", path):
                    order = fake.orders.get(m[1])
                    if order is None:
                        return 404, {"name": "RESOURCE_NOT_FOUND"}
                    if order.status != "APPROVED":
                        issue = "ORDER_ALREADY_CAPTURED" if order.captures else "ORDER_NOT_APPROVED"
                        return 422, {"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": issue}]}
                    fake._capture(order)
                    return 201, order.view(fake.url)
                if m := re.fullmatch(r"/v2/payments/captures/(\w+)/refund", path):
                    found = [
                        o
                        for o in fake.orders.values()
                        if o.captures and o.captures[0]["id"] == m[1]
                    ]
                    if not found:
                        return 404, {"name": "RESOURCE_NOT_FOUND"}
                    try:
                        value = (body.get("amount") or {}).get("value")
                        made = fake._refund(found[0], value)
                    except ValueError:
                        return 422, {"name": "UNPROCESSABLE_ENTITY",
                                     "details": [{"issue": "REFUND_AMOUNT_EXCEEDED"}]}  # fmt: skip
                    fake.event("PAYMENT.CAPTURE.REFUNDED", made)
                    return 201, made
                if path == "/v1/notifications/verify-webhook-signature":
                    ok = fake.check(body)
                    return 200, {"verification_status": "SUCCESS" if ok else "FAILURE"}
                return 404, {"name": "RESOURCE_NOT_FOUND"}

            def _token(self) -> None:
                expected = base64.b64encode(f"{fake.client_id}:{fake.client_secret}".encode())
                if self.headers.get("Authorization") != f"Basic {expected.decode()}":
                    self.answer({"error": "invalid_client"}, 401)
                    return
                token = secrets.token_urlsafe(16)
                fake.tokens.add(token)
                self.answer({"access_token": token, "token_type": "Bearer", "expires_in": 32400})

            def _page(self, order_id: str) -> None:
                order = fake.orders.get(order_id)
                if order is None or order.status != "PAYER_ACTION_REQUIRED":
                    self.send_error(404)
                    return
                unit = order.unit
                label = html.escape(str(unit.get("description", "")))
                amount = f"{unit['amount']['value']} {unit['amount']['currency_code']}"
                page = (
                    f"<!doctype html><title>PayPal</title><h1>{label}</h1><p id=amount>{amount}</p>"
                    f"<form method=post action=/checkoutnow/{order.id}>"
                    "<button id=pay-paypal>Pay with PayPal</button></form>"
                ).encode()
                self.html(page)

            def _approved_on_page(self, order_id: str) -> None:
                try:
                    fake.approve(order_id)
                except (KeyError, ValueError):
                    self.send_error(404)
                    return
                context = fake.orders[order_id].body["payment_source"]["paypal"][
                    "experience_context"
                ]
                back = context["return_url"]
                sep = "&" if "?" in back else "?"
                self.send_response(303)
                self.send_header("Location", f"{back}{sep}token={order_id}&PayerID=FAKEPAYER")
                self.end_headers()

        return Handler

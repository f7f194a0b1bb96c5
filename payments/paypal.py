"""PayPal Checkout (Orders v2), through PayPal's official `paypal-server-sdk`.

A checkout is a PayPal order with intent CAPTURE for one pack: one purchase unit whose `custom_id`
is our order id, a `PayPal-Request-Id` per order (a retry makes no second order), the person sent
to its `payer-action` link. Once they approve, the order is captured (`confirm`, idempotent per
order): a capture COMPLETED is paid, PENDING is processing until PayPal says otherwise.

Notifications are verified before anything in them is believed, one of two ways (setting
`PAYPAL_WEBHOOK_VERIFY`):
- `local` (default): RSA-SHA256 over `transmission id|transmission time|webhook id|crc32(raw
  body)` with PayPal's certificate, fetched only from an https URL on a paypal.com host, cached,
  and used only within its validity dates; a transmission older than `tolerance_s` is refused.
- `api`: PayPal's own verify-webhook-signature call.

The SDK is synchronous (requests): every call runs in a worker thread. Disputes are not part of
the SDK: they are read from PayPal's disputes API with the SDK's own OAuth token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from paypalserversdk.configuration import Configuration, Environment
from paypalserversdk.exceptions.api_exception import ApiException
from paypalserversdk.http.auth.o_auth_2 import ClientCredentialsAuthCredentials
from paypalserversdk.paypal_serversdk_client import PaypalServersdkClient

from payments.errors import ForgedNotice, ProviderDown, UnknownOrder
from payments.orders import Order
from payments.packs import Pack, to_major, to_minor
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

log = logging.getLogger("payments")
ORDER_EVENTS = {"CHECKOUT.ORDER.APPROVED", "CHECKOUT.ORDER.COMPLETED"}
CAPTURE_EVENTS = {
    "PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.PENDING", "PAYMENT.CAPTURE.DENIED",
    "PAYMENT.CAPTURE.REFUNDED", "PAYMENT.CAPTURE.REVERSED",
}  # fmt: skip
DISPUTE_EVENTS = {
    "CUSTOMER.DISPUTE.CREATED",
    "CUSTOMER.DISPUTE.UPDATED",
    "CUSTOMER.DISPUTE.RESOLVED",
}
CERT_HOSTS = ("paypal.com",)


class _Configuration(Configuration):
    """The SDK's configuration, pointed at `base_url` when one is given (tests, a proxy)."""

    def __init__(self, base_url: str | None = None, **kwargs: Any) -> None:
        self._base_url = base_url
        super().__init__(**kwargs)

    def get_base_uri(self, server: Any = None) -> str:
        if self._base_url:
            return self._base_url
        return str(super().get_base_uri())


class PayPalOrders:
    name = "paypal"

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        webhook_id: str,
        environment: Literal["sandbox", "live"] = "sandbox",
        api_base: str | None = None,
        verify: Literal["local", "api"] = "local",
        certificates: Mapping[str, bytes] | None = None,
        tolerance_s: int = 300,
        fetch: Callable[[str], bytes] | None = None,
    ) -> None:
        config = _Configuration(
            api_base,
            environment=Environment.PRODUCTION if environment == "live" else Environment.SANDBOX,
            client_credentials_auth_credentials=ClientCredentialsAuthCredentials(
                o_auth_client_id=client_id, o_auth_client_secret=client_secret
            ),
            timeout=30,
        )
        self.client = PaypalServersdkClient(config=config)
        self.base = config.get_base_uri()
        self.webhook_id = webhook_id
        self.verify_by = verify
        self.tolerance_s = tolerance_s
        self._certs: dict[str, x509.Certificate] = {
            url: x509.load_pem_x509_certificate(pem) for url, pem in (certificates or {}).items()
        }
        self._certs_lock = threading.Lock()
        self._fetch = fetch or _fetch_certificate

    # Checkout -----------------------------------------------------------------------------

    async def start(self, order: Order, pack: Pack, urls: ReturnUrls) -> Checkout:
        body = {
            "intent": "CAPTURE",
            "purchase_units": [{
                "reference_id": order.id,
                "custom_id": order.id,
                "description": pack.describe()[:127],
                "amount": {
                    "currency_code": order.currency.upper(),
                    "value": to_major(order.amount_minor, order.currency),
                },
            }],
            "payment_source": {"paypal": {"experience_context": {
                "return_url": urls.success, "cancel_url": urls.cancel,
                "user_action": "PAY_NOW", "shipping_preference": "NO_SHIPPING",
            }}},
        }  # fmt: skip
        made = await self._call(
            self.client.orders.create_order,
            {"body": body, "paypal_request_id": f"checkout:{order.id}", "prefer": "return=representation"},
        )  # fmt: skip
        link = next(
            (
                x["href"]
                for x in made.get("links", [])
                if x.get("rel") in ("payer-action", "approve")
            ),
            None,
        )
        if link is None:
            raise ProviderDown(f"PayPal order {made.get('id')} has no link for the payer.")
        return Checkout(made["id"], link)

    async def payment(self, ref: str) -> Payment:
        found = await self._call(self.client.orders.get_order, {"id": ref})
        return await self._payment(found)

    async def confirm(self, ref: str) -> Payment:
        found = await self._call(self.client.orders.get_order, {"id": ref})
        if found.get("status") == "APPROVED":
            found = await self._call(
                self.client.orders.capture_order,
                {"id": ref, "paypal_request_id": f"capture:{ref}", "prefer": "return=representation"},
            )  # fmt: skip
        return await self._payment(found)

    async def refund(self, payment: Payment, amount_minor: int, key: str) -> None:
        if payment.payment_ref is None:
            raise UnknownOrder(f"PayPal order {payment.ref} has no capture to refund.")
        await self._call(
            self.client.payments.refund_captured_payment,
            {"capture_id": payment.payment_ref, "paypal_request_id": key,
             "body": {"amount": {"currency_code": payment.currency.upper(),
                                 "value": to_major(amount_minor, payment.currency)},
                      "custom_id": payment.order_id or ""}},
        )  # fmt: skip

    async def recent(self, since: datetime) -> list[str]:
        # Orders v2 has no listing: reconciliation asks about the orders we know (purchases.py).
        return []

    async def _payment(self, found: dict[str, Any]) -> Payment:
        unit = (found.get("purchase_units") or [{}])[0]
        amount = unit.get("amount") or {}
        currency = str(amount.get("currency_code", "")).lower()
        paid = (unit.get("payments") or {}).get("captures") or []
        capture = paid[0] if paid else None
        status = _status(found.get("status", ""), capture["status"] if capture else None)
        refunds = tuple(
            Refund(r["id"], to_minor(r["amount"]["value"], currency))
            for r in (unit.get("payments") or {}).get("refunds") or []
            if r.get("status") in ("COMPLETED", "PENDING")
        )
        disputes: tuple[DisputeCase, ...] = ()
        if capture is not None:
            disputes = await self._disputes(capture["id"], currency)
            if capture["status"] == "REVERSED" and not disputes:  # a chargeback, no case shown
                disputes = (
                    DisputeCase(
                        f"reversal-{capture['id']}", _capture_minor(capture, currency), "lost"
                    ),
                )
        total = capture and _capture_minor(capture, currency)
        return Payment(
            found["id"], unit.get("custom_id"), status, currency,
            total or (to_minor(amount["value"], currency) if amount else 0),
            refunds, disputes, None, capture["id"] if capture else None,
        )  # fmt: skip

    async def _disputes(self, capture_id: str, currency: str) -> tuple[DisputeCase, ...]:
        token = await asyncio.to_thread(self._token)
        try:
            async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:
                answer = await http.get(
                    "/v1/customer/disputes", params={"disputed_transaction_id": capture_id},
                    headers={"Authorization": f"Bearer {token}"},
                )  # fmt: skip
        except httpx.HTTPError as exc:
            raise ProviderDown(f"PayPal disputes could not be read: {exc}") from exc
        if answer.status_code != 200:
            raise ProviderDown(f"PayPal disputes answered {answer.status_code}")
        items = sorted(
            answer.json().get("items", []), key=lambda d: (d["create_time"], d["dispute_id"])
        )
        return tuple(
            DisputeCase(
                d["dispute_id"], to_minor(d["dispute_amount"]["value"], currency), _dispute(d)
            )
            for d in items
        )

    def _token(self) -> str:
        auth = self.client.auth_managers["Oauth2"]
        if not auth.is_valid():
            raise ProviderDown("PayPal refused our credentials.")
        return str(auth._o_auth_token.access_token)

    async def _call(self, method: Callable[[dict[str, Any]], Any], options: dict[str, Any]) -> Any:
        try:
            answer = await asyncio.to_thread(method, options)
        except ApiException as exc:
            if exc.response_code == 404:
                raise UnknownOrder(f"PayPal has no such order: {exc}") from None
            raise ProviderDown(f"PayPal refused the request ({exc.response_code}): {exc}") from exc
        except Exception as exc:  # requests' errors: the SDK does not wrap them
            raise ProviderDown(f"PayPal could not be reached: {exc}") from exc
        return json.loads(answer.text) if answer.text else {}

    # Notifications ------------------------------------------------------------------------

    async def verify(self, body: bytes, headers: Mapping[str, str]) -> Notice:
        if self.verify_by == "api":
            await self._verified_by_paypal(body, headers)
        else:
            await asyncio.to_thread(self._verified_here, body, headers)
        try:
            event = json.loads(body)
            return Notice(str(event["id"]), str(event["event_type"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ForgedNotice(f"PayPal event is malformed: {exc}") from None

    async def checkout_of(self, body: bytes) -> str | None:
        event = json.loads(body)
        kind, resource = event["event_type"], event.get("resource") or {}
        if kind in ORDER_EVENTS:
            return resource.get("id")
        if kind in CAPTURE_EVENTS:
            related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
            return related.get("order_id")
        if kind in DISPUTE_EVENTS:
            captures = [
                t.get("seller_transaction_id") for t in resource.get("disputed_transactions", [])
            ]
            return await self._order_of_capture(captures[0]) if captures else None
        return None

    async def _order_of_capture(self, capture_id: str | None) -> str | None:
        if not capture_id:
            return None
        try:
            found = await self._call(
                self.client.payments.get_captured_payment, {"capture_id": capture_id}
            )
        except UnknownOrder:
            return None
        return ((found.get("supplementary_data") or {}).get("related_ids") or {}).get("order_id")

    def _verified_here(self, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            tid = headers["paypal-transmission-id"]
            when = headers["paypal-transmission-time"]
            sig = base64.b64decode(headers["paypal-transmission-sig"], validate=True)
            cert_url = headers["paypal-cert-url"]
            algo = headers.get("paypal-auth-algo", "SHA256withRSA")
            sent = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except (KeyError, ValueError) as exc:
            raise ForgedNotice(f"PayPal notification headers missing or malformed: {exc}") from None
        if algo != "SHA256withRSA":
            raise ForgedNotice(f"PayPal notification signed with {algo!r}, not SHA256withRSA")
        if abs(time.time() - sent.timestamp()) > self.tolerance_s:
            raise ForgedNotice("PayPal notification is outside the tolerance (stale or replayed)")
        cert = self._certificate(cert_url)
        now = datetime.now(UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ForgedNotice("PayPal's certificate is not valid now")
        signed = f"{tid}|{when}|{self.webhook_id}|{zlib.crc32(body)}".encode()
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise ForgedNotice("PayPal's certificate does not hold an RSA key")
        try:
            key.verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise ForgedNotice("PayPal signature does not match") from None

    def _certificate(self, url: str) -> x509.Certificate:
        with self._certs_lock:
            if url in self._certs:
                return self._certs[url]
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or not any(
            host == h or host.endswith(f".{h}") for h in CERT_HOSTS
        ):
            raise ForgedNotice(f"PayPal certificates come from https://*.paypal.com, not {url!r}")
        try:
            cert = x509.load_pem_x509_certificate(self._fetch(url))
        except Exception as exc:
            raise ProviderDown(f"PayPal's certificate could not be fetched: {exc}") from exc
        with self._certs_lock:
            self._certs[url] = cert
        return cert

    async def _verified_by_paypal(self, body: bytes, headers: Mapping[str, str]) -> None:
        try:
            request = {
                "auth_algo": headers["paypal-auth-algo"],
                "cert_url": headers["paypal-cert-url"],
                "transmission_id": headers["paypal-transmission-id"],
                "transmission_sig": headers["paypal-transmission-sig"],
                "transmission_time": headers["paypal-transmission-time"],
                "webhook_id": self.webhook_id,
                "webhook_event": json.loads(body),
            }
        except (KeyError, ValueError) as exc:
            raise ForgedNotice(f"PayPal notification headers or body malformed: {exc}") from None
        token = await asyncio.to_thread(self._token)
        try:
            async with httpx.AsyncClient(base_url=self.base, timeout=30) as http:
                answer = await http.post(
                    "/v1/notifications/verify-webhook-signature", json=request,
                    headers={"Authorization": f"Bearer {token}"},
                )  # fmt: skip
        except httpx.HTTPError as exc:
            raise ProviderDown(f"PayPal could not verify the notification: {exc}") from exc
        if answer.status_code != 200:
            raise ProviderDown(f"PayPal's verification answered {answer.status_code}")
        if answer.json().get("verification_status") != "SUCCESS":
            raise ForgedNotice("PayPal says the notification's signature does not hold")


def _fetch_certificate(url: str) -> bytes:
    answer = httpx.get(url, timeout=10, follow_redirects=False)
    answer.raise_for_status()
    return answer.content


def _status(order_status: str, capture_status: str | None) -> Status:
    if capture_status in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED", "REVERSED"):
        return "paid"
    if capture_status == "PENDING":
        return "processing"
    if capture_status in ("DECLINED", "FAILED"):
        return "failed"
    if order_status == "VOIDED":
        return "expired"
    return "open"


def _capture_minor(capture: dict[str, Any], currency: str) -> int:
    return to_minor(capture["amount"]["value"], currency)


def _dispute(found: dict[str, Any]) -> Dispute:
    if found.get("status") != "RESOLVED":
        return "open"
    outcome = (found.get("dispute_outcome") or {}).get("outcome_code", "")
    return "won" if outcome in ("RESOLVED_SELLER_FAVOUR", "CANCELED_BY_BUYER", "DENIED") else "lost"

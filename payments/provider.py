"""What every payment provider does for us, and the plain records it answers with.

A provider starts a checkout for an order, verifies a notification (webhook), says which
checkout it is about, tells where a checkout stands (its authoritative state: notifications are
only triggers), refunds, and lists recent checkouts for reconciliation. The SDKs live inside the
adapters (`payments/stripe.py`, `payments/paypal.py`); nothing else imports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from payments.orders import Order
from payments.packs import Pack

Status = Literal["open", "processing", "paid", "expired", "failed"]
Dispute = Literal["open", "won", "lost"]


@dataclass(frozen=True)
class Checkout:
    ref: str  # the provider's id of the checkout (Stripe checkout session, PayPal order)
    url: str  # where the person pays


@dataclass(frozen=True)
class Refund:
    id: str  # the provider's
    amount_minor: int


@dataclass(frozen=True)
class DisputeCase:
    id: str  # the provider's
    amount_minor: int
    status: Dispute


@dataclass(frozen=True)
class Payment:
    """A checkout as its provider says it stands now. Refunds and disputes are listed oldest
    first: a new one is added at the end, and none is ever taken away, so what each one takes
    back can be worked out the same way by whoever applies it, whenever."""

    ref: str
    order_id: str | None  # our order id, as we gave it to the provider
    status: Status
    currency: str  # lowercase ISO code
    amount_minor: int  # what the person was charged, in minor units
    refunds: tuple[Refund, ...] = ()
    disputes: tuple[DisputeCase, ...] = ()
    receipt_url: str | None = None
    payment_ref: str | None = None  # the payment under the checkout (PaymentIntent, capture)

    @property
    def refunded_minor(self) -> int:
        return sum(r.amount_minor for r in self.refunds)


@dataclass(frozen=True)
class Notice:
    """A notification whose signature held: the provider's event id and type."""

    event_id: str
    type: str


@dataclass(frozen=True)
class ReturnUrls:
    success: str  # the provider appends its own reference where it needs to
    cancel: str


class PaymentProvider(Protocol):
    name: str

    async def start(self, order: Order, pack: Pack, urls: ReturnUrls) -> Checkout:
        """Open a checkout for `order` (idempotent per order: a retry opens no second one)."""
        ...

    async def verify(self, body: bytes, headers: Mapping[str, str]) -> Notice:
        """Verify a notification on its raw body: `ForgedNotice` if it does not hold (quick: a
        webhook is answered once its notification is verified and stored)."""
        ...

    async def checkout_of(self, body: bytes) -> str | None:
        """The checkout a verified notification is about (None: nothing we act on). May ask
        the provider."""
        ...

    async def payment(self, ref: str) -> Payment:
        """Where the checkout `ref` stands, read from the provider."""
        ...

    async def confirm(self, ref: str) -> Payment:
        """As `payment`, after finishing what the provider leaves to us once the person has
        approved (PayPal: capture the order). Idempotent."""
        ...

    async def refund(self, payment: Payment, amount_minor: int, key: str) -> None:
        """Refund `amount_minor` of the payment at the provider, once per `key`."""
        ...

    async def recent(self, since: datetime) -> list[str]:
        """The refs of checkouts created since `since` (reconciliation)."""
        ...

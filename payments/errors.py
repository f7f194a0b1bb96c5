"""Errors of the payments package.

PaymentError
├── UnknownOrder        no order with that id (or not this person's)
├── UnknownPack         no pack with that id
├── NotFulfillable      the order cannot be paid for (no checkout yet, expired, failed)
├── NotRefundable       the order cannot be refunded (not paid, or not that much)
├── ForgedNotice        a webhook whose signature does not hold (or is stale): answered 400
├── Mismatch            the provider's checkout does not match our order (amount, currency, id)
└── ProviderDown        the provider could not be reached or failed: try again later
"""

from __future__ import annotations


class PaymentError(Exception):
    """Root of every error the payments package raises."""


class UnknownOrder(PaymentError):
    """There is no order with that id (or it is not this person's)."""


class NotFulfillable(PaymentError):
    """The order cannot be paid for: its checkout has not started, or it expired or failed."""


class UnknownPack(PaymentError):
    """There is no pack with that id."""


class NotRefundable(PaymentError):
    """The order cannot be refunded: it was not paid, or not as much is left to refund."""


class ForgedNotice(PaymentError):
    """A notification whose signature is missing, wrong or stale: nothing in it is believed."""


class Mismatch(PaymentError):
    """What the provider says was paid does not match the order (amount, currency or order id):
    nothing is granted, and the order is reported."""


class ProviderDown(PaymentError):
    """The provider could not be reached, or answered with an error: try again later."""

"""Errors of the payments package.

PaymentError
├── UnknownOrder        no order with that id (or not this person's)
└── NotFulfillable      the order cannot be paid for (no checkout yet, expired, failed)
"""

from __future__ import annotations


class PaymentError(Exception):
    """Root of every error the payments package raises."""


class UnknownOrder(PaymentError):
    """There is no order with that id (or it is not this person's)."""


class NotFulfillable(PaymentError):
    """The order cannot be paid for: its checkout has not started, or it expired or failed."""

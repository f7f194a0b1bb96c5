"""The payment providers and packs this deployment's settings describe. A provider is offered when
its settings are all there; half of them is a mistake, refused at startup with what is missing."""

from __future__ import annotations

from payments.packs import Packs
from payments.paypal import PayPalOrders
from payments.provider import PaymentProvider
from payments.stripe import StripeCheckout
from settings import Settings


def packs(settings: Settings) -> Packs:
    return Packs.load(settings.packs_file)


def providers(settings: Settings) -> dict[str, PaymentProvider]:
    found: dict[str, PaymentProvider] = {}
    stripe = (settings.stripe_secret_key, settings.stripe_webhook_secret)
    if any(stripe):
        if not all(stripe):
            raise ValueError("Stripe needs both STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET.")
        key, webhook = (s.get_secret_value() for s in stripe if s is not None)
        found["stripe"] = StripeCheckout(
            key, webhook, settings.stripe_api_base, settings.stripe_automatic_tax
        )
    paypal = (settings.paypal_client_id, settings.paypal_client_secret, settings.paypal_webhook_id)
    if any(paypal):
        if not all(paypal) or settings.paypal_client_secret is None:
            raise ValueError(
                "PayPal needs PAYPAL_CLIENT_ID, PAYPAL_CLIENT_SECRET and PAYPAL_WEBHOOK_ID."
            )
        found["paypal"] = PayPalOrders(
            settings.paypal_client_id or "", settings.paypal_client_secret.get_secret_value(),
            settings.paypal_webhook_id or "", settings.paypal_environment,
            settings.paypal_api_base, settings.paypal_webhook_verify,
        )  # fmt: skip
    return found

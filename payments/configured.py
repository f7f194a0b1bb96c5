"""The payment providers and packs this deployment's settings describe. A provider is offered when
its settings are all there; half of them is a mistake, refused at startup with what is missing."""

from __future__ import annotations

from datetime import timedelta

from payments.chain import Chain
from payments.packs import Packs
from payments.paypal import PayPalOrders
from payments.provider import PaymentProvider
from payments.quotes import Asset, CryptoConfig
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


def crypto(settings: Settings) -> CryptoConfig | None:
    """The chain crypto top-ups are watched on, if its settings are there (`ValueError` naming
    what is missing or wrong when only some are)."""
    needed = {
        "CRYPTO_RPC_URL": settings.crypto_rpc_url,
        "CRYPTO_CHAIN_ID": settings.crypto_chain_id,
        "CRYPTO_RECEIVING_ADDRESS": settings.crypto_receiving_address,
    }
    if not any(needed.values()):
        return None
    missing = [name for name, value in needed.items() if not value]
    if missing:
        raise ValueError(f"Crypto top-ups need {', '.join(missing)} as well.")
    token = native = None
    if settings.crypto_token_address:
        token = Asset("token", settings.crypto_token_symbol, settings.crypto_token_decimals,
                      _address(settings.crypto_token_address, "CRYPTO_TOKEN_ADDRESS"))  # fmt: skip
    if settings.crypto_price_feed or settings.crypto_native_rate:
        native = Asset("native", settings.crypto_native_symbol, 18, None)
    currency = Packs.load(settings.packs_file).currency
    if currency != settings.crypto_token_currency.lower():
        raise ValueError(
            f"Crypto top-ups price in {settings.crypto_token_currency.upper()} "
            f"(CRYPTO_TOKEN_CURRENCY), but packs.toml is priced in {currency.upper()}."
        )
    if token is None and native is None:
        raise ValueError(
            "Crypto top-ups need CRYPTO_TOKEN_ADDRESS, or a price for the native coin "
            "(CRYPTO_PRICE_FEED or CRYPTO_NATIVE_RATE)."
        )
    return CryptoConfig(
        chain_id=settings.crypto_chain_id or 0,
        chain_name=settings.crypto_chain_name,
        recipient=_address(settings.crypto_receiving_address or "", "CRYPTO_RECEIVING_ADDRESS"),
        native=native,
        token=token,
        currency=currency,
        price_feed=(
            _address(settings.crypto_price_feed, "CRYPTO_PRICE_FEED")
            if settings.crypto_price_feed else None
        ),
        fixed_rate=settings.crypto_native_rate,
        price_max_age_s=settings.crypto_price_max_age_s,
        confirmations=settings.crypto_confirmations,
        finalized=settings.crypto_wait_finalized,
        quote_ttl=timedelta(minutes=settings.crypto_quote_minutes),
        underpayment=settings.crypto_underpayment,
        explorer=settings.crypto_explorer_url,
        poll_s=settings.crypto_poll_s,
        start_block=settings.crypto_start_block,
        log_range=settings.crypto_log_range,
    )  # fmt: skip


def _address(text: str, name: str) -> str:
    try:
        return Chain.checksum(text.strip()).lower()
    except ValueError:
        raise ValueError(f"{name} is not an Ethereum address: {text!r}.") from None

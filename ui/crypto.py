"""Crypto top-ups in the chat.

- Wallets: *Connect wallet* (the badge's shortfall messages, /wallets, before a first crypto
  payment) binds one by Sign-In with Ethereum, in the browser wallet (public/elements/
  WalletConnect.jsx) or by signing the message in any wallet and pasting the signature. /wallets
  lists them, each with an Unbind button.
- Paying: a pack's crypto button shows the quote (amount, receiving address, chain, how long it
  holds), its EIP-681 link and QR code, and a button asking the browser wallet to send exactly that
  (public/elements/CryptoPay.jsx). The watcher finds the payment and the person's chats hear
  "seen", each confirmation and the credits (ui/live.py), on every replica.
- /paid <hash>: a transaction the watcher did not credit (sent before the app watched, or from a
  wallet bound since) is looked up and, if it is theirs, credited.
"""

from __future__ import annotations

import io
from typing import Any

import chainlit as cl
import segno

from payments import crypto, onchain, wallets
from payments.crypto import CryptoPayments
from payments.errors import ProviderDown
from payments.onchain import News, NotClaimed
from payments.packs import Pack
from payments.quotes import NoQuote, Quote
from payments.wallets import NotBound
from ui.command import Command
from ui.deployment import Deployment, person, public_base
from ui.errors import Refused
from ui.wallet import AUTHOR

CONNECT_ACTION = "wallet_connect"
MESSAGE_ACTION = "wallet_siwe_message"
BIND_ACTION = "wallet_siwe_bind"
MANUAL_ACTION = "wallet_sign_manually"
UNBIND_ACTION = "wallet_unbind"
SENT_ACTION = "crypto_sent"
PASTE_ACTION = "crypto_paste_hash"
ASK_TIMEOUT_S = 600
NOT_OFFERED = "Crypto payments are not offered here."


def adapter(d: Deployment) -> CryptoPayments:
    if d.crypto is None:
        raise Refused(NOT_OFFERED)
    return d.crypto


def site(d: Deployment) -> wallets.Site:
    return wallets.Site(public_base(d), adapter(d).config.chain_id)


async def connect(d: Deployment, why: str = "") -> None:
    """The ways to bind a wallet."""
    config = adapter(d).config
    element = cl.CustomElement(
        name="WalletConnect",
        props={"message_action": MESSAGE_ACTION, "bind_action": BIND_ACTION,
               "manual_action": MANUAL_ACTION},
        display="inline",
    )  # fmt: skip
    await cl.Message(
        content=f"{why}**Connect a wallet** on {config.chain_name}: you sign a Sign-In with "
        "Ethereum message that binds it to your account (it costs nothing and sends nothing). "
        "Payments from a bound wallet are credited to you.",
        elements=[element],
        author=AUTHOR,
    ).send()


async def message_for(d: Deployment, action: cl.Action) -> dict[str, Any]:
    """The sign-in message for the address the browser wallet gave (WalletConnect.jsx)."""
    address = str((action.payload or {}).get("address", ""))
    try:
        message = await wallets.challenge(d.engine, site(d), person(), address)
    except NotBound as refused:
        return {"error": str(refused)}
    return {"message": message.text()}


async def bind(d: Deployment, action: cl.Action) -> dict[str, Any]:
    """A signed sign-in message from the browser wallet: bound, or why not."""
    payload = action.payload or {}
    try:
        wallet = await wallets.bind(
            d.engine, adapter(d).chain, site(d), person(),
            str(payload.get("message", "")), str(payload.get("signature", "")),
        )  # fmt: skip
    except NotBound as refused:
        return {"ok": False, "error": f"Not bound: {refused}"}
    except ProviderDown:  # asking the chain whether the address is a contract wallet
        return {"ok": False, "error": "Not bound: the chain cannot be reached now; try again."}
    text = f"Wallet {wallet.address} is bound to your account."
    await cl.Message(content=text, author=AUTHOR).send()
    return {"ok": True, "text": text}


async def sign_manually(d: Deployment) -> None:
    """Binding without a browser wallet: the address, the message to sign, the signature."""
    asked = await cl.AskUserMessage(
        content="Paste the address of the wallet to bind (0x followed by 40 characters).",
        author=AUTHOR, timeout=ASK_TIMEOUT_S,
    ).send()  # fmt: skip
    if not asked:
        return
    try:
        message = await wallets.challenge(d.engine, site(d), person(), asked["output"].strip())
    except NotBound as refused:
        raise Refused(str(refused)) from None
    signed = await cl.AskUserMessage(
        content="Sign this message exactly as it is in your wallet (\"Sign message\" / "
        f"personal_sign), then paste the signature here:\n\n```text\n{message.text()}\n```",
        author=AUTHOR, timeout=ASK_TIMEOUT_S,
    ).send()  # fmt: skip
    if not signed:
        return
    try:
        wallet = await wallets.bind(
            d.engine, adapter(d).chain, site(d), person(), message.text(), signed["output"].strip()
        )
    except NotBound as refused:
        raise Refused(f"Not bound: {refused}") from None
    await cl.Message(content=f"Wallet {wallet.address} is bound to your account.",
                     author=AUTHOR).send()  # fmt: skip


async def show_wallets(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    bound = await wallets.of_account(d.engine, person())
    if not bound:
        await connect(d, "You have no wallet bound yet. ")
        return
    lines = ["**Your wallets** (payments from them are credited to you):", ""]
    lines += [f"- `{w.address}`, bound {w.bound_at:%Y-%m-%d %H:%M} UTC" for w in bound]
    actions = [
        cl.Action(name=UNBIND_ACTION, payload={"address": w.address},
                  label=f"Unbind {w.address[:8]}…{w.address[-4:]}")
        for w in bound
    ]  # fmt: skip
    actions.append(cl.Action(name=CONNECT_ACTION, payload={}, label="Connect another wallet"))
    await cl.Message(content="\n".join(lines), actions=actions, author=AUTHOR).send()


async def unbind(d: Deployment, action: cl.Action) -> None:
    address = str((action.payload or {}).get("address", ""))
    if not await wallets.unbind(d.engine, person(), address):
        raise Refused("That wallet is not bound to your account.")
    await cl.Message(
        content=f"Wallet {address} is unbound: its payments from now on are not credited to you.",
        author=AUTHOR,
    ).send()


async def pay(d: Deployment, pack: Pack, asset: str) -> None:
    """A pack's crypto button: the quote, the link and QR code, and the browser wallet's button."""
    payments = adapter(d)
    if not await wallets.of_account(d.engine, person()):
        await connect(d, "First bind the wallet you will pay from, then pick the pack again. ")
        return
    try:
        quote = await crypto.sell(d.engine, payments, pack, person(), asset)
    except NoQuote as refused:
        raise Refused(str(refused)) from None
    await cl.Message(
        content=describe(payments, pack, quote),
        elements=[qr_code(quote), pay_button(payments, quote)],
        actions=[
            cl.Action(name=PASTE_ACTION, payload={}, label="I paid: enter the transaction hash")
        ],
        author=AUTHOR,
    ).send()


def describe(payments: CryptoPayments, pack: Pack, quote: Quote) -> str:
    config = payments.config
    to = payments.chain.checksum(quote.recipient)
    token = f" (token contract `{payments.chain.checksum(quote.token)}`)" if quote.token else ""
    return (
        f"**{pack.describe()}.** Send exactly **{quote.shown}**{token} on **{config.chain_name}** "
        f"(chain {config.chain_id}) to\n\n`{to}`\n\nfrom a wallet bound to your account. The "
        f"amount holds until **{quote.expires_at:%Y-%m-%d %H:%M} UTC**; the credits arrive "
        f"after {config.confirmations} confirmations. Payment link for wallets: "
        f"`{quote.link}` (the QR code holds it)."
    )


def qr_code(quote: Quote) -> cl.Image:
    png = io.BytesIO()
    segno.make(quote.link, error="m").save(png, kind="png", scale=5, border=2)
    return cl.Image(name=f"pay-{quote.order_id}.png", content=png.getvalue(), display="inline",
                    mime="image/png", size="small")  # fmt: skip


def pay_button(payments: CryptoPayments, quote: Quote) -> cl.CustomElement:
    return cl.CustomElement(
        name="CryptoPay",
        props={
            **quote.transaction(), "chain_id": hex(quote.chain_id), "amount": quote.shown,
            "order": quote.order_id, "sent_action": SENT_ACTION,
            "after": f"It is credited after {payments.config.confirmations} confirmations.",
        },
        display="inline",
    )  # fmt: skip


async def sent(d: Deployment, action: cl.Action) -> None:
    """The browser wallet sent a payment: look now rather than at the next poll."""
    if d.watcher is not None:
        d.watcher.poke()


async def paste_hash(d: Deployment) -> None:
    asked = await cl.AskUserMessage(
        content="Paste the transaction hash (0x followed by 64 characters).", author=AUTHOR,
        timeout=ASK_TIMEOUT_S,
    ).send()  # fmt: skip
    if asked:
        await claim(d, asked["output"])


async def paid(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    if not text.strip():
        raise Refused("Usage: /paid <transaction hash>")
    await claim(d, text)


async def claim(d: Deployment, tx_hash: str) -> None:
    payments = adapter(d)
    try:
        news = await onchain.claim(
            d.engine, d.ledger, payments.chain, payments.config, person(), tx_hash.strip()
        )
    except NotClaimed as refused:
        raise Refused(str(refused)) from None
    for item in news:
        if item.everywhere:
            await tell(d, item)
        else:
            await cl.Message(content=item.message, author=AUTHOR).send()
    if not news:
        await cl.Message(content="That payment is recorded; the credits arrive with its "
                         "confirmations.", author=AUTHOR).send()  # fmt: skip


async def tell(d: Deployment, news: News) -> None:
    """A payment's news, to every open chat of its person (on every replica)."""
    await d.live.tell(news.account, news.toast, news.message)


COMMANDS = (
    Command("wallets", "wallet", "Your crypto wallets: connect, see, unbind", show_wallets,
            crypto=True),
    Command("paid", "link", "Credit a crypto payment by its transaction hash", paid, crypto=True),
)  # fmt: skip

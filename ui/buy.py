"""Buying credits from the chat: `/buy` (and the Buy buttons on the badge, the shortfall and the
low-balance messages) shows the packs; a pack's button starts its checkout and links to the
provider's page, opened in a new tab. `/billing` lists the person's purchases with receipts.

What a payment did is told to every open chat of the person (ui/live.py) by whichever path
applied it first: the webhook, the return page or reconciliation (`tell`).
"""

from __future__ import annotations

import chainlit as cl

from credits.ledger import show_credits
from payments import orders, purchases
from payments.errors import UnknownPack
from payments.fulfilment import Change
from payments.packs import show_money
from payments.provider import ReturnUrls
from ui import crypto, statement
from ui.command import Command
from ui.deployment import Deployment, person, public_base
from ui.errors import Refused
from ui.live import Live
from ui.wallet import AUTHOR, NOT_SELLING

PACK_ACTION = "buy_pack"
PROVIDER_LABELS = {"stripe": "Card (Stripe)", "paypal": "PayPal"}


async def offer(d: Deployment) -> None:
    """The packs on sale, a button per pack and provider."""
    if not d.selling:
        await cl.Message(content=NOT_SELLING, author=AUTHOR).send()
        return
    lines = ["**Buy credits.** Pick a pack and how to pay; card and PayPal open in a new tab."]
    lines += [f"- **{p.describe()}**" for p in d.packs.all]
    ways = [({"provider": name}, PROVIDER_LABELS.get(name, name)) for name in d.providers]
    if d.crypto is not None:
        config = d.crypto.config
        ways += [
            ({"provider": "crypto", "asset": a.id}, f"{a.symbol} on {config.chain_name}")
            for a in config.assets.values()
        ]
        lines.append(
            f"\nCrypto payments are credited from a wallet bound to your account (/wallets) "
            f"after {config.confirmations} confirmations."
        )
    actions = [
        cl.Action(
            name=PACK_ACTION, payload={"pack": p.id, **way}, label=f"{p.label} · {p.price} · {label}",
            tooltip=f"{p.total_credits} credits",
        )
        for p in d.packs.all
        for way, label in ways
    ]  # fmt: skip
    await cl.Message(content="\n".join(lines), actions=actions, author=AUTHOR).send()


async def buy_pack(d: Deployment, action: cl.Action) -> None:
    """A pack's button: its order, its checkout, and the link to pay."""
    payload = action.payload if isinstance(action.payload, dict) else {}
    try:
        pack = d.packs.find(payload.get("pack"))
    except UnknownPack as unknown:
        raise Refused(f"{unknown} Type /buy to see the packs on sale.") from None
    if payload.get("provider") == "crypto":
        await crypto.pay(d, pack, str(payload.get("asset", "")))
        return
    provider = d.providers.get(str(payload.get("provider", "")))
    if provider is None:
        raise Refused("That way of paying is not offered here.")
    base = public_base(d)
    urls = ReturnUrls(
        f"{base}/payments/{provider.name}/return?order={{order}}", f"{base}/payments/cancel"
    )
    _, checkout = await purchases.start(d.engine, provider, pack, person(), urls)
    await cl.Message(
        content=f"**{pack.describe()}.** [Pay with {PROVIDER_LABELS.get(provider.name, provider.name)}]"
        f"({checkout.url}) (opens in a new tab). Your balance updates here as soon as the payment "
        "is confirmed.",
        author=AUTHOR,
    ).send()


async def billing(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    bought = await orders.of_account(d.engine, person())
    if not bought:
        await cl.Message(
            content="No purchases yet. Type /buy to see the packs.", author=AUTHOR
        ).send()
        return
    rows = [
        "| Date (UTC) | Pack | Credits | Paid | Provider | Status | Receipt |",
        "|---|---|---|---|---|---|---|",
    ]
    paid = []
    for o in bought:
        receipt = f"[provider's]({o.receipt_url})" if o.receipt_url else (o.payment_ref or "")
        if o.provider == "crypto" and o.payment_ref:  # the transaction, on the explorer
            receipt = f"[{o.payment_ref}]({o.receipt_url})" if o.receipt_url else o.payment_ref
        credits = o.units if o.credited is None else o.credited
        rows.append(
            f"| {o.created_at:%Y-%m-%d %H:%M} | {o.pack} | {show_credits(credits)} | "
            f"{show_money(o.amount_minor, o.currency)} | {o.provider} | {o.status} | {receipt} |"
        )
        if o.transfer_id:
            paid.append(o.transfer_id)
    text = "**Your purchases**\n\n" + "\n".join(rows)
    if paid:
        text += "\n\nThe ledger receipt of a purchase proves its credits are in the signed log:"
    actions = [
        cl.Action(
            name=statement.RECEIPT_ACTION, payload={"transfer": t}, label=f"Ledger receipt: {t}"
        )
        for t in paid[:10]
    ]
    await cl.Message(content=text, actions=actions, author=AUTHOR).send()


async def tell(live: Live, change: Change) -> None:
    """Tell the person's open chats what a payment did (every replica, ui/live.py)."""
    order = change.order
    toast, message = news(change)
    if toast or message:
        await live.tell(order.account, toast, message)


def news(change: Change) -> tuple[str, str]:
    """The toast and the chat message for what `change` did."""
    order, credits = change.order, show_credits(change.order.units)
    price = show_money(order.amount_minor, order.currency)
    if change.granted:
        owed = (
            f" {show_credits(change.covered)} of them covered what you owed after a refund or "
            "a payment dispute took back credits you had used."
            if change.covered
            else ""
        )
        return (
            f"Payment received: +{credits} credits",
            f"**Payment received.** {price} by {order.provider}: **{credits} credits** were added "
            f"to your balance.{owed}",
        )
    if change.returned:
        back = show_credits(change.returned)
        return (f"Dispute won: +{back} credits", f"The dispute over your {price} payment ended "
                f"in your favour: **{back} credits** are back on your balance.")  # fmt: skip
    if change.taken:
        taken = show_credits(change.taken)
        why = "refunded" if order.state in ("refunded", "partially_refunded") else "disputed"
        return (
            f"{taken} credits taken back",
            f"Your {price} payment by {order.provider} was {why}: **{taken} credits** were taken "
            "back. If you had already used them, what is owed is covered by your next credits "
            "first.",
        )
    if order.state == "pending" and order.provider_status == "processing":
        return ("Payment processing", f"Your {price} payment by {order.provider} is processing: "
                f"the {credits} credits arrive when it clears.")  # fmt: skip
    if order.state == "failed":
        return ("Payment failed", f"Your {price} payment by {order.provider} failed: nothing was "
                "credited.")  # fmt: skip
    return ("", "")


COMMANDS = (
    Command(
        "buy", "credit-card", "Buy credits", lambda d, verb, text, message: offer(d), selling=True
    ),
    Command("billing", "receipt", "Your purchases and their receipts", billing, selling=True),
)

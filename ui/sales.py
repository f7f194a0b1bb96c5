"""What was sold, for administrators: `/refund <order> [amount]` refunds at the provider (the
credits are taken back by the same path as a refund made at the provider, and the person is told),
`/revenue [days]` shows revenue by day and provider, refunds, disputes and credits owed."""

from __future__ import annotations

import chainlit as cl

from credits.ledger import show_credits
from payments import orders, purchases, report
from payments.errors import UnknownOrder
from payments.packs import show_money, to_minor
from ui import buy
from ui.command import Command
from ui.deployment import Deployment
from ui.errors import Refused
from ui.wallet import AUTHOR

USAGE = {
    "refund": "Refund an order at its provider: /refund <order id> [amount, like 2.50]",
    "revenue": "Revenue, refunds, disputes and credits owed: /revenue [days]",
}


async def _refund(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    words = text.split()
    if not 1 <= len(words) <= 2:
        raise Refused(USAGE["refund"])
    try:
        order = await orders.get(d.engine, words[0])
    except UnknownOrder:
        raise Refused(f"There is no order {words[0][:40]!r}.") from None
    provider = d.providers.get(order.provider)
    if provider is None:
        raise Refused(f"{order.provider} is not configured here: refund it there.")
    try:
        amount = to_minor(words[1], order.currency) if len(words) == 2 else None
    except ValueError as bad:
        raise Refused(f"{bad}. {USAGE['refund']}") from None
    change = await purchases.refund(d.engine, d.ledger, provider, order.id, amount)
    await buy.tell(d.live, change)
    await cl.Message(
        content=f"Refunded: order `{order.id}` of {order.account} is now "
        f"{change.order.state.replace('_', ' ')} ({show_money(change.order.refunded_minor, order.currency)} "
        f"refunded); {show_credits(change.taken)} credits were taken back.",
        author=AUTHOR,
    ).send()


async def _revenue(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    try:
        days = int(text.strip() or 30)
    except ValueError:
        raise Refused(USAGE["revenue"]) from None
    found = await report.revenue(d.engine, d.ledger, max(1, min(days, 366)))
    await cl.Message(content="```\n" + "\n".join(found.lines()) + "\n```", author=AUTHOR).send()


COMMANDS = (
    Command("refund", "undo-2", USAGE["refund"], _refund, admin=True, selling=True),
    Command("revenue", "banknote", USAGE["revenue"], _revenue, admin=True, selling=True),
)

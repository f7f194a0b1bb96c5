"""What a person sees of their credits: the balance badge, the welcome bonus, the out-of-credit notice.

The badge is a Chainlit custom element (public/elements/CreditBadge.jsx) pinned to the top of the
page; the session keeps the element and updates its props after every charge, which reaches the
browser over the socket at once. It is live state, not history: it is not persisted with the thread.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import chainlit as cl
from chainlit.context import init_ws_context
from chainlit.session import WebsocketSession
from chainlit.user_session import user_sessions

from agents.catalog import Model
from credits.ledger import Balance, show_credits
from credits.metering import welcome_id
from credits.store import Ledger
from ui.deployment import Deployment, person
from ui.live import News

log = logging.getLogger("wallet")
BADGE = "CreditBadge"
AUTHOR = "Credits"  # notices by this author are shown, not kept with the thread
BUY_ACTION = "buy_credits"  # shows the packs on sale (ui/buy.py); the badge calls it too
NOT_SELLING = "This service does not sell credits: ask an administrator to grant you some."


@dataclass(frozen=True)
class Shortfall:
    """Why work could not start: what the person has, what it could cost, on which model, and a
    cheaper model that would fit (if any)."""

    available: int
    needed: int
    model: Model
    cheaper: Model | None
    selling: bool = False  # credits can be bought here


async def pay_welcome_bonus(ledger: Ledger, user: str, units: int) -> bool:
    """The welcome bonus, once per person however often or wherever they sign in; True if this
    call paid it (two sessions racing both pay the same transfer id: it is paid once)."""
    transfer = welcome_id(user)
    if await ledger.transfer(transfer) is not None:
        return False
    await ledger.grant(user, units, transfer, code="welcome", metadata={"kind": "welcome"})
    return True


async def greet(d: Deployment) -> None:
    """A new chat's first message: the welcome bonus (paid here, once per person) or the balance,
    with the badge."""
    user = person()
    welcomed = await pay_welcome_bonus(d.ledger, user, d.welcome_units)
    balance = await d.ledger.balance(user)
    text = welcome_text(d.welcome_units, balance) if welcomed else balance_text(balance)
    greeting = await cl.Message(content=text, author=AUTHOR).send()
    await show_balance(d, cl.context.session.thread_id, greeting.id, balance)


async def show_balance(
    d: Deployment, thread_id: str, for_id: str | None, balance: Balance | None = None
) -> Balance:
    """Send this chat's badge (with the message `for_id`), or update it if it is already shown."""
    balance = balance or await d.ledger.balance(person())
    props = badge_props(balance, d.settings.credit_usd, d.low_units, d.selling)
    badge = cl.user_session.get("badge")
    if badge is not None and badge.id == badge_id(thread_id):
        await refresh_badge(badge, props)
        return balance
    # None yet, or the one of another chat this session showed before (a thread opened from the
    # sidebar keeps the session): this chat's page does not have it.
    badge = new_badge(thread_id, props)
    cl.user_session.set("badge", badge)
    await badge.send(for_id=for_id or "", persist=False)
    return balance


def show_after_resume(thread_id: str, for_id: str | None) -> None:
    """A reopened thread's badge, to be sent once Chainlit has sent the thread itself: it does so
    after `on_chat_resume`, and the page then drops the elements it had (the badge is not kept
    with the thread), so a badge sent from `on_chat_resume` never shows."""
    cl.user_session.set("badge", None)  # even this thread's own: the page no longer has it
    cl.user_session.set("badge_due", (thread_id, for_id))


def badge_host(thread: Mapping[str, Any]) -> str | None:
    """The message of a reopened thread the badge is sent with (it is pinned to the top of the
    page wherever it is sent): the person's last message, not a step (folded away, it would hide
    the badge) nor an answer (whose text it would join)."""
    steps = thread.get("steps") or []
    mine = [s["id"] for s in steps if s["type"] == "user_message"]
    return mine[-1] if mine else None


def send_badges_after_resume(
    handlers: dict[str, Any], d: Deployment, also: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Wrap Chainlit's `connection_successful` socket handler (which resumes a thread): once it
    has run, send the badge `show_after_resume` left due, in that session; then `also` (what else
    a reopened thread shows that is not kept with it: its tasks)."""
    resume = handlers["connection_successful"]

    async def resumed(sid: str, *args: Any) -> Any:
        done = await resume(sid, *args)
        session = WebsocketSession.get(sid)
        if session is None:
            return done
        init_ws_context(session)
        if due := user_sessions.get(session.id, {}).get("badge_due"):
            cl.user_session.set("badge_due", None)
            try:
                await show_balance(d, *due)
            except Exception:  # the thread is open; only its badge is missing
                log.exception("Could not show the badge of a reopened thread")
        if also is not None:
            try:
                await also()
            except Exception:
                log.exception("Could not show the rest of a reopened thread")
        return done

    handlers["connection_successful"] = resumed


async def after_charge(d: Deployment, charged: int) -> None:
    """Once a piece of work is settled: the low-balance warning if this charge crossed it, then
    the badge (last, so that its update means all about this charge has been said)."""
    balance = await d.ledger.balance(person())
    before, after = balance.available + charged, balance.available
    if crossed_low(before, after, d.low_units):
        selling = d.selling
        await cl.context.emitter.send_toast(low_toast(after), "warning")
        await cl.Message(
            content=low_text(after, d.low_units, selling),
            actions=[buy_action("Top up")] if selling else [],
            author=AUTHOR,
        ).send()
    await show_balance(d, cl.context.session.thread_id, None, balance)


async def refresh(d: Deployment, news: News) -> None:
    """In one of the person's open chats, told from outside it (ui/live.py): the toast, the
    message, and the badge's new figures (where it is shown)."""
    if news.toast:
        await cl.context.emitter.send_toast(news.toast, "info")
    if news.message:
        await cl.Message(content=news.message, author=AUTHOR).send()
    if cl.user_session.get("badge") is not None:
        await show_balance(d, cl.context.session.thread_id, None)


async def tell_cannot_cover(
    d: Deployment, available: int, what: str, cost: str, advice: str = ""
) -> None:
    """Work other than a chat answer that `available` units cannot cover: nothing was sent.
    `what` names it ("this image"), `cost` says what it could cost, `advice` how to pay less."""
    selling = d.selling
    await cl.Message(
        content=f"**Not enough credits for {what}.** You have **{show_credits(available)} "
        f"credits**; {cost}, so nothing was sent to the model.{' ' + advice if advice else ''} "
        f"To get more credits, {MORE[selling]}.",
        actions=[buy_action()] if selling else [],
        author=AUTHOR,
    ).send()


async def tell_shortfall(short: Shortfall) -> None:
    await cl.Message(
        content=shortfall_text(short), actions=shortfall_actions(short), author=AUTHOR
    ).send()


def welcome_text(bonus_units: int, balance: Balance) -> str:
    return (
        f"Welcome! You have been given **{show_credits(bonus_units)} credits** to start with.\n\n"
        "Credits pay for what the AI models do for you: every answer costs a little, depending on "
        "the model and the length of the conversation, and its cost shows under it. Your balance "
        f"is at the top right; it is **{show_credits(balance.available)} credits** now."
    )


def balance_text(balance: Balance) -> str:
    return f"You have **{show_credits(balance.available)} credits**. Each answer's cost shows under it."


def badge_props(
    balance: Balance, credit_usd: Decimal, low_units: int, selling: bool = False
) -> dict[str, object]:
    return {
        "credits": show_credits(balance.available),
        "units": balance.available,
        "held": show_credits(balance.held) if balance.held else "",
        "owed": show_credits(balance.owed) if balance.owed else "",
        "low": balance.available < low_units or balance.owed > 0,
        "credit_usd": str(credit_usd),
        "buy": BUY_ACTION if selling else "",
    }


def new_badge(thread_id: str, props: dict[str, object]) -> cl.CustomElement:
    """The badge of one chat (one id per thread, so a resumed chat updates the same one)."""
    badge = cl.CustomElement(name=BADGE, props=props, display="inline")
    badge.id = badge_id(thread_id)
    return badge


def badge_id(thread_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"credit-badge:{thread_id}"))


async def refresh_badge(badge: cl.CustomElement, props: dict[str, object]) -> None:
    """The badge's new figures, to the browser only. `badge.update()` would also write the props
    to a file in the session's folder and queue a history write that `ChatHistory` skips, at
    every answer; the page renders a custom element from its props alone."""
    badge.props = props
    badge.content = json.dumps(props)  # Chainlit derives it from props only at creation
    await cl.context.emitter.send_element(badge.to_dict())


def shortfall_text(short: Shortfall) -> str:
    lines = [
        f"**Not enough credits for this answer.** You have **{show_credits(short.available)} "
        f"credits**; an answer from {short.model.label} to this conversation could cost up to "
        f"**{show_credits(short.needed)} credits**, so nothing was sent to the model.",
    ]
    if short.cheaper is not None:
        lines.append(f"{short.cheaper.label} costs less and fits your balance: switch to it below.")
    lines.append(
        f"To get more credits, {MORE[short.selling]}. A shorter conversation (start a new chat) "
        "also costs less."
    )
    return "\n\n".join(lines)


MORE = {
    True: "buy some (the button below, or /buy) or ask an administrator",
    False: "ask an administrator of this service to grant you some",
}


def buy_action(label: str = "Buy credits") -> cl.Action:
    return cl.Action(name=BUY_ACTION, payload={}, label=label, tooltip="See the credit packs")


def shortfall_actions(short: Shortfall) -> list[cl.Action]:
    found = [buy_action()] if short.selling else []
    if short.cheaper is not None:
        found.append(
            cl.Action(
                name="use_model",  # ui/picker.py
                payload={"model": short.cheaper.id},
                label=f"Use {short.cheaper.label}",
                tooltip="Switch this chat to a cheaper model",
            )
        )
    return found


async def tell_owed(d: Deployment, owed: int) -> None:
    """Spending is stopped: a refund or dispute took back credits that had been spent."""
    selling = d.selling
    await cl.Message(
        content=f"**Nothing can be spent right now: you owe {show_credits(owed)} credits.** A "
        "refund or a payment dispute took back credits you had already used. The next credits "
        f"you get cover this first, and then you can go on. To get credits, {MORE[selling]}.",
        actions=[buy_action()] if selling else [],
        author=AUTHOR,
    ).send()


def crossed_low(before: int, after: int, low: int) -> bool:
    """True when a charge took the balance from `low` or more to below it: warn once then, not at
    every answer below it, and again only after it has been back above."""
    return before >= low > after


def low_toast(after: int) -> str:
    return f"Low balance: {show_credits(after)} credits left."


def low_text(after: int, low: int, selling: bool = False) -> str:
    return (
        f"**Your balance is low: {show_credits(after)} credits**, below {show_credits(low)}. "
        "Answers will stop when it cannot cover one; a cheaper model (in the settings) or a "
        f"shorter conversation makes it last longer. To get more credits, {MORE[selling]}. "
        "Type /usage to see where they went."
    )

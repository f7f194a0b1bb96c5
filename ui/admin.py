"""The administrators' commands: credits, and who stays signed in and who may sign up.

    /grant <user> <credits> <reason>      give credits (from the promotions account)
    /adjust <user> <+/-credits> <reason>  correct a balance either way, never below zero
    /disable <account> <reason>   nobody signs in as it; its sessions end; its holds are released
    /enable <account>             it may sign in again (its credits were never touched)
    /logout <account>             all its sessions end
    /invite <email>               the person whose provider verifies it may sign up (SIGNUP)

A grant or an adjustment is recorded in the ledger with the administrator's identity and the
reason, under a transfer id made from the chat message's id, so a message delivered twice changes
the balance once. The others are the same as `python -m auth disable|enable|logout|invite`
(auth/sessions.py): this process notices at once, other replicas within two seconds; each is logged
with the administrator and the reason. Whether the person is an administrator is asked of our
records before each (ui/menu.py). A refused command changes nothing and says why.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import chainlit as cl
from sqlalchemy.ext.asyncio import AsyncEngine

from auth import passwords, signup
from auth.passwords import normalise
from auth.sessions import Standings
from credits.errors import CreditsError, InsufficientCredits
from credits.ledger import check_amount, parse_credits, show_credits
from credits.metering import transfer_id
from credits.store import Ledger
from ui import wallet
from ui.command import Command
from ui.deployment import Deployment, person
from ui.errors import Refused

log = logging.getLogger("access")
MAX_REASON = 500
USAGE = {
    "grant": "/grant <user> <credits> <reason>, e.g. /grant ann@example.com 50 beta tester",
    "adjust": "/adjust <user> <+/-credits> <reason>, e.g. /adjust ann@example.com -5 refund error",
    "disable": "/disable <account> <reason>, e.g. /disable bob@example.com abuse reports",
    "enable": "/enable <account>, e.g. /enable bob@example.com",
    "logout": "/logout <account>, e.g. /logout github:4242",
    "invite": "/invite <email>, e.g. /invite ann@example.com",
}
ACCESS_VERBS = ("disable", "enable", "logout", "invite")
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")


@dataclass(frozen=True)
class Order:
    """A parsed /grant or /adjust."""

    verb: str
    user: str
    units: int  # signed for adjust
    reason: str


def parse(verb: str, text: str) -> Order:
    """The order in `text` (what follows the command), or `Refused` saying what is wrong."""
    parts = text.split(maxsplit=2)
    if len(parts) < 3:
        raise Refused(f"Usage: {USAGE[verb]}")
    user, amount, reason = parts
    try:
        units = parse_credits(amount)
        check_amount(abs(units))
    except CreditsError as bad:
        raise Refused(str(bad)) from None
    if verb == "grant" and units < 0:
        raise Refused("A grant gives credits: to take some away, use /adjust with a minus sign.")
    if len(reason) > MAX_REASON:
        raise Refused(f"Keep the reason under {MAX_REASON} characters.")
    return Order(verb, user, units, reason.strip())


async def find_user(ledger: Ledger, engine: AsyncEngine, typed: str) -> str | None:
    """The person `typed` names: someone with credits (anyone who ever signed in) or a password
    login; password logins are matched without regard to case, as they sign in."""
    for candidate in dict.fromkeys((typed, passwords.normalise(typed))):
        try:
            if await ledger.has_account(candidate):
                return candidate
        except CreditsError:  # not a valid identifier at all
            return None
    normal = passwords.normalise(typed)
    return normal if await passwords.role_of(engine, normal) is not None else None


async def record(
    ledger: Ledger, engine: AsyncEngine, order: Order, admin: str, ref: str
) -> tuple[str, str]:
    """Record `order` for `admin`; `ref` (the message id) makes a repeated delivery a no-op.
    Whose balance it changed, and what to tell the administrator."""
    user = await find_user(ledger, engine, order.user)
    if user is None:
        raise Refused(
            f"There is no user {order.user!r}: they must have signed in once, or have a login."
        )
    key = transfer_id(order.verb, ref)
    try:
        if order.verb == "grant":
            metadata = {"reason": order.reason, "admin": admin}
            done = await ledger.grant(user, order.units, key, code="grant", metadata=metadata)
        else:
            done = await ledger.adjust(user, order.units, order.reason, admin, key)
    except InsufficientCredits as short:
        raise Refused(
            f"{user} has {show_credits(short.available)} credits available: an adjustment of "
            f"{show_credits(order.units)} would take them below zero."
        ) from None
    except CreditsError as error:
        raise Refused(str(error)) from None
    balance = await ledger.balance(user)
    verb = "Granted" if order.verb == "grant" else "Adjusted by"
    sign = "+" if order.units > 0 and order.verb == "adjust" else ""
    return user, (
        f"{verb} **{sign}{show_credits(order.units)} credits** for {user} ({order.reason}). "
        f"Their balance is now **{show_credits(balance.available)} credits**. "
        f"Recorded as `{done.transfer_id}` by {admin}."
    )


async def set_access(
    verb: str, text: str, standings: Standings, ledger: Ledger, engine: AsyncEngine, admin: str
) -> str:
    """Carry out `/<verb> <text>` for `admin`; what to tell them, or `Refused`."""
    if verb == "invite":
        return await invite(text.strip(), engine, admin)
    account, _, reason = text.strip().partition(" ")
    reason = reason.strip()
    if not account:
        raise Refused(f"Usage: {USAGE[verb]}")
    if verb == "disable" and not reason:
        raise Refused(f"Say why. Usage: {USAGE[verb]}")
    if len(reason) > MAX_REASON:
        raise Refused(f"Keep the reason under {MAX_REASON} characters.")
    user = await find_user(ledger, engine, account)
    if user is None:
        raise Refused(
            f"There is no user {account!r}: they must have signed in once, or have a login."
        )
    if user == admin and verb != "enable":
        raise Refused("Not your own account: ask another administrator, or use the command line.")
    await standings.apply(verb, user)
    released = await ledger.release_all(user, "account disabled") if verb == "disable" else 0
    log.warning("%s %s by %s: %s", verb, user, admin, reason or "-")
    if verb == "disable":
        return (
            f"**{user} is disabled** ({reason}): their sessions have ended, {released} running "
            "piece(s) of work were stopped and charged nothing, their credits stay. "
            f"`/enable {user}` lets them back."
        )
    if verb == "enable":
        return f"**{user} may sign in again.**"
    return f"**All of {user}'s sessions have ended**: they must sign in again."


async def invite(email: str, engine: AsyncEngine, admin: str) -> str:
    if not EMAIL.fullmatch(email):
        raise Refused(f"That is not an email address. Usage: {USAGE['invite']}")
    if not await signup.invite(engine, email, admin):
        raise Refused(f"{normalise(email)} was invited already.")
    log.warning("invite %s by %s", normalise(email), admin)
    return (
        f"**{normalise(email)} is invited**: they may sign up once, through a provider that "
        "verifies this address."
    )


async def _credits(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    order = parse(verb, text)
    user, done = await record(d.ledger, d.engine, order, person(), message.id)
    await cl.Message(content=done, author=wallet.AUTHOR).send()
    if d.settings.metering:  # the administrator may have granted to themself
        await wallet.show_balance(d, cl.context.session.thread_id, None)
    change = "granted you" if verb == "grant" else "adjusted your balance by"
    sign = "+" if order.units > 0 and verb == "adjust" else ""
    await d.live.tell(user, f"An administrator {change} {sign}{show_credits(order.units)} credits.")


async def _access(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    done = await set_access(verb, text, d.standings, d.ledger, d.engine, person())
    await cl.Message(content=done, author=wallet.AUTHOR).send()


COMMANDS = (
    Command("grant", "coins", USAGE["grant"], _credits, admin=True),
    Command("adjust", "coins", USAGE["adjust"], _credits, admin=True),
    *(Command(v, "user-cog", USAGE[v], _access, admin=True) for v in ACCESS_VERBS),
)

"""`/grant` and `/adjust`: administrators give or correct credits from the chat.

    /grant <user> <credits> <reason>      give credits (from the promotions account)
    /adjust <user> <+/-credits> <reason>  correct a balance either way, never below zero

Each is recorded in the ledger with the administrator's identity and the reason, under a transfer id
made from the chat message's id, so a message delivered twice changes the balance once. A refused
command writes nothing and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from auth import passwords
from auth.identities import admin_by_email, verified_emails
from credits.errors import CreditsError, InsufficientCredits
from credits.ledger import check_amount, parse_credits, show_credits
from credits.metering import transfer_id
from credits.store import Ledger

VERBS = ("grant", "adjust")
MAX_REASON = 500
USAGE = {
    "grant": "/grant <user> <credits> <reason>, e.g. /grant ann@example.com 50 beta tester",
    "adjust": "/adjust <user> <+/-credits> <reason>, e.g. /adjust ann@example.com -5 refund error",
}


class Refused(Exception):
    """An administrator's command that was not carried out; nothing was written."""


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


async def is_admin(
    engine: AsyncEngine, identifier: str, session_role: object, admin_emails: list[str]
) -> bool:
    """An administrator, and still one now, by our records alone (a demotion counts at once): a
    password login with the admin role, or an identity whose provider said its email, listed in
    ADMIN_EMAILS, is verified. Identities' accounts are `<provider>:<subject>`, a name no password
    login can have, so one never passes for the other."""
    if session_role != "admin":
        return False
    if await passwords.role_of(engine, identifier) == "admin":
        return True
    return admin_by_email(await verified_emails(engine, identifier), admin_emails)


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


async def carry_out(ledger: Ledger, engine: AsyncEngine, order: Order, admin: str, ref: str) -> str:
    """Record `order` for `admin`; `ref` (the message id) makes a repeated delivery a no-op."""
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
    return (
        f"{verb} **{sign}{show_credits(order.units)} credits** for {user} ({order.reason}). "
        f"Their balance is now **{show_credits(balance.available)} credits**. "
        f"Recorded as `{done.transfer_id}` by {admin}."
    )

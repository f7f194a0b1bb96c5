"""`/disable`, `/enable`, `/logout` and `/invite`: administrators decide who stays signed in and who
may sign up, from the chat.

    /disable <account> <reason>   nobody signs in as it; its sessions end; its holds are released
    /enable <account>             it may sign in again (its credits were never touched)
    /logout <account>             all its sessions end
    /invite <email>               the person whose provider verifies it may sign up (SIGNUP)

The same as `python -m auth disable|enable|logout` (auth/sessions.py): this process notices at
once, other replicas within two seconds. Each is logged with the administrator and the reason.
A refused command changes nothing and says why.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy.ext.asyncio import AsyncEngine

from auth import signup
from auth.passwords import normalise
from auth.sessions import Standings
from credits.store import Ledger
from grants import Refused, find_user

log = logging.getLogger("access")
VERBS = ("disable", "enable", "logout", "invite")
MAX_REASON = 500
USAGE = {
    "disable": "/disable <account> <reason>, e.g. /disable bob@example.com abuse reports",
    "enable": "/enable <account>, e.g. /enable bob@example.com",
    "logout": "/logout <account>, e.g. /logout github:4242",
    "invite": "/invite <email>, e.g. /invite ann@example.com",
}
EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")


async def carry_out(
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

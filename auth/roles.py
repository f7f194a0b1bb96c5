"""Who is an administrator: asked of our records at every admin action, never of a session alone.

An administrator is a password login with the admin role, or an identity whose provider said its
email, listed in ADMIN_EMAILS, is verified. Identities' accounts are `<provider>:<subject>`, a name
no password login can have, so one never passes for the other; a demotion counts at once.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from auth import passwords
from auth.identities import admin_by_email, verified_emails


async def is_admin(
    engine: AsyncEngine, identifier: str, session_role: object, admin_emails: list[str]
) -> bool:
    """Whether `identifier`, whose session says `session_role`, is an administrator now."""
    if session_role != "admin":
        return False
    if await passwords.role_of(engine, identifier) == "admin":
        return True
    return admin_by_email(await verified_emails(engine, identifier), admin_emails)

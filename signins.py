"""`/signins`: the ways a person signs in to their account, and links to add another."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from auth import identities, passwords
from auth.providers import Provider


async def overview(engine: AsyncEngine, account: str, providers: dict[str, Provider]) -> str:
    """What the person sees: their password login, their linked providers, and a link per
    configured provider to link it (opens the provider's sign-in, then comes back here)."""
    lines = ["**How you sign in**", ""]
    if await passwords.role_of(engine, account) is not None:
        lines.append(f"- a password, as {account}")
    by_key = {p.key: p for p in providers.values()}
    for link in await identities.links(engine, account):
        provider = by_key.get(link.provider)
        label = provider.label if provider else link.provider
        email = f" ({link.email})" if link.email else ""
        lines.append(f"- {label}{email}, since {link.created_at:%Y-%m-%d}")
    if providers:
        offered = ", ".join(f"[{p.label}](/auth/link/{name})" for name, p in providers.items())
        lines += ["", f"Link another: {offered}. An operator can remove a link."]
    return "\n".join(lines)

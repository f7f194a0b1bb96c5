"""`/signins` and `/password`: the ways a person signs in to their account, linking another
provider, removing one, and where to change a password."""

from __future__ import annotations

from dataclasses import dataclass

import chainlit as cl
from sqlalchemy.ext.asyncio import AsyncEngine

from auth import identities, passwords
from auth.providers import Provider
from ui.command import Command
from ui.deployment import Deployment, person
from ui.wallet import AUTHOR

UNLINK_ACTION = "unlink_signin"


@dataclass(frozen=True)
class Ways:
    """How an account signs in: a password login or not, and its provider identities."""

    password: bool
    links: list[identities.Link]

    @property
    def count(self) -> int:
        return int(self.password) + len(self.links)


async def ways_in(engine: AsyncEngine, account: str) -> Ways:
    return Ways(
        await passwords.role_of(engine, account) is not None,
        await identities.links(engine, account),
    )


async def overview(
    engine: AsyncEngine, account: str, providers: dict[str, Provider], author: str
) -> cl.Message:
    """The person's ways in, a Remove button for each provider sign-in (but never the last way
    in), and a link per configured provider to link it."""
    ways = await ways_in(engine, account)
    by_key = {p.key: p for p in providers.values()}
    lines = ["**How you sign in**", ""]
    if ways.password:
        lines.append(f"- a password, as {account} ([change it](/auth/password))")
    actions = []
    for link in ways.links:
        provider = by_key.get(link.provider)
        label = provider.label if provider else link.provider
        email = f" ({link.email})" if link.email else ""
        lines.append(f"- {label}{email}, since {link.created_at:%Y-%m-%d}")
        if ways.count > 1:
            actions.append(
                cl.Action(
                    name=UNLINK_ACTION,
                    label=f"Remove {label}{email}",
                    payload={"provider": link.provider, "subject": link.subject},
                )
            )
    if providers:
        offered = ", ".join(f"[{p.label}](/auth/link/{name})" for name, p in providers.items())
        lines += ["", f"Link another: {offered}."]
    return cl.Message(content="\n".join(lines), author=author, actions=actions)


async def unlink(engine: AsyncEngine, account: str, provider: object, subject: object) -> str:
    """Remove one of the account's own provider sign-ins, unless it is the last way in."""
    if not isinstance(provider, str) or not isinstance(subject, str):
        return "That sign-in is not one of yours; nothing was changed."
    if (await ways_in(engine, account)).count <= 1:
        return "That is your only way to sign in, so it stays."
    if not await identities.unlink(engine, account, provider, subject):
        return "That sign-in is not one of yours (or was removed already); nothing was changed."
    return "Removed: that sign-in no longer opens this account."


async def password_text(engine: AsyncEngine, account: str) -> str:
    if await passwords.role_of(engine, account) is None:
        return "You sign in through a provider: there is no password to change here."
    return "Change your password on [this page](/auth/password): your other sessions will end."


async def unlink_action(d: Deployment, action: cl.Action) -> None:
    """A Remove button of the /signins message."""
    said = await unlink(
        d.engine, person(), action.payload.get("provider"), action.payload.get("subject")
    )
    await cl.Message(content=said, author=AUTHOR).send()


async def _signins(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    await (await overview(d.engine, person(), d.sign_in_providers, AUTHOR)).send()


async def _password(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    await cl.Message(content=await password_text(d.engine, person()), author=AUTHOR).send()


COMMANDS = (
    Command("signins", "key-round", "How you sign in, and linking another provider", _signins),
    Command("password", "lock", "Change your password", _password),
)

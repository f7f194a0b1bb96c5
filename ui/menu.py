"""The commands a person may type after `/`: the composer's menu, and carrying one out.

Each module of the chat side declares its own `COMMANDS`; a new one is a line in `ALL`. Commands
for administrators are offered to them only, and carried out only after our records say, again,
that the person is one (a demotion counts at once).
"""

from __future__ import annotations

import chainlit as cl
from chainlit.types import CommandDict

from auth.roles import is_admin
from ui import admin, buy, crypto, images, sales, signins, statement, summary, tasks
from ui.command import Command
from ui.deployment import Deployment, person, session_role
from ui.errors import Refused
from ui.wallet import NOT_SELLING

ALL: tuple[Command, ...] = (
    *images.COMMANDS,
    *tasks.COMMANDS,
    *statement.COMMANDS,
    *buy.COMMANDS,
    *crypto.COMMANDS,
    *summary.COMMANDS,
    *signins.COMMANDS,
    *admin.COMMANDS,
    *sales.COMMANDS,
)
BY_NAME = {c.name: c for c in ALL}


async def offer(d: Deployment) -> None:
    """Show this person the commands they may use."""
    admin = await is_administrator(d)
    await cl.context.emitter.set_commands(
        [
            CommandDict(
                id=c.name,
                icon=c.icon,
                description=c.description,
                button=False,
                persistent=False,
                selected=False,
            )
            for c in ALL
            if (admin or not c.admin)
            and (d.selling or not c.selling)
            and (d.crypto or not c.crypto)
            and (d.catalog.enabled("image") or not c.images)
        ]
    )


def find(message: cl.Message) -> tuple[Command, str] | None:
    """(command, its text) when the message is one, picked from the menu or typed."""
    if message.command in BY_NAME:
        return BY_NAME[message.command], message.content
    head, _, rest = message.content.strip().partition(" ")
    if head.startswith("/") and head[1:] in BY_NAME:
        return BY_NAME[head[1:]], rest
    return None


async def carry_out(d: Deployment, command: Command, text: str, message: cl.Message) -> None:
    if command.selling and not d.selling:
        raise Refused(NOT_SELLING)
    if command.crypto and not d.crypto:
        raise Refused(crypto.NOT_OFFERED)
    if command.images:
        images.image_model(d, None)  # none enabled: says what an administrator can configure
    if command.admin and not await is_administrator(d):
        raise Refused(f"Only administrators can use /{command.name}.")
    await command.run(d, command.name, text, message)


async def is_administrator(d: Deployment) -> bool:
    return await is_admin(d.engine, person(), session_role(), d.settings.admin_email_list)

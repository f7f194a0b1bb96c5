"""Quotes in the chat, whatever they are for (images, tasks): the message that shows one, and
deciding it with its buttons. The quote itself lives in the database (storage/work_quotes.py):
confirmed or cancelled once, by its owner."""

from __future__ import annotations

import chainlit as cl

from storage import work_quotes
from ui.deployment import Deployment, person

SHOWN = "quotes"  # user_session: quote id -> the message showing it on this page


def remember(quote_id: str, message: cl.Message) -> None:
    """`message` shows quote `quote_id` on this page (its buttons go once it is decided)."""
    shown: dict[str, cl.Message] = cl.user_session.get(SHOWN) or {}
    shown[quote_id] = message
    cl.user_session.set(SHOWN, shown)


async def decide(
    d: Deployment,
    action: cl.Action,
    decision: work_quotes.Decision,
    author: str,
    again: str,
) -> work_quotes.Quote | None:
    """Confirm or cancel the quote a button names: once, by its owner; its buttons go. None (and
    the person told, `again` saying how to ask anew) when it was decided already or expired."""
    quote_id = str((action.payload or {}).get("quote", ""))
    quote = await work_quotes.decide(d.engine, quote_id, person(), decision)
    shown: dict[str, cl.Message] = cl.user_session.get(SHOWN) or {}
    message = shown.pop(quote_id, None)
    if isinstance(message, cl.Message):  # not a stale entry of a reopened chat's session
        await message.remove_actions()
    if quote is None:
        await cl.Message(
            content=f"This quote was answered already or has expired: nothing was done. {again}",
            author=author,
        ).send()
    return quote

"""The one place errors become what a person reads in the chat.

Every Chainlit callback of ours runs inside `told()`: a refusal of ours, a ledger error or a model
error becomes a plain message that says what happened, what it cost (usually nothing) and what to
do next. Anything else is a fault of ours: logged in full under a short reference, and shown as that
reference only (Chainlit would show the exception's text, which may hold a query or a path).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import chainlit as cl

from agents.catalog import Model
from agents.errors import AgentError, ModelNotAvailable
from agents.images import ImageRefused
from agents.vision import NotAnImage
from credits.errors import (
    CreditsError,
    HoldNotCreated,
    InsufficientCredits,
    OwesCredits,
    WriterStopped,
)
from credits.ledger import show_credits
from payments.errors import PaymentError, ProviderDown

log = logging.getLogger("ui")


class Refused(Exception):
    """Something a person asked for that was not done; the message says why. Nothing changed."""


@asynccontextmanager
async def told(doing: str = "") -> AsyncIterator[None]:
    """Run a callback; what goes wrong in it is told to the person. `doing` names what they asked
    for (`/grant`), for refusals."""
    try:
        yield
    except (Refused, CreditsError, AgentError, PaymentError) as error:
        if text := text_for(error, doing):
            await cl.ErrorMessage(content=text).send()
    except Exception as error:
        ref = secrets.token_hex(4)
        log.error("Chat callback failed [%s]", ref, exc_info=error)
        await cl.ErrorMessage(
            content=f"Something went wrong on our side (reference {ref}). You are charged only "
            "for what was delivered. Try again; if it goes on, tell an administrator the reference."
        ).send()


def text_for(error: Exception, doing: str = "") -> str:
    """What the person reads for `error` (empty: nothing to say)."""
    if isinstance(error, Refused):
        return f"{doing} refused: {error} Nothing was changed." if doing else str(error)
    if isinstance(error, OwesCredits):
        return (
            f"You owe {show_credits(error.owed)} credits (a refund or dispute took back credits "
            "you had used): nothing can be spent until your next credits cover it."
        )
    if isinstance(error, InsufficientCredits):
        return f"Not enough credits: you have {show_credits(error.available)}. Nothing was charged."
    if isinstance(error, HoldNotCreated):
        return "This piece of work was started already: it was not run again. Nothing was charged."
    if isinstance(error, WriterStopped):
        return "The credits ledger is not available right now. Nothing was charged: try again."
    if isinstance(error, CreditsError):
        return f"{error} Nothing was charged."
    if isinstance(error, ProviderDown):
        return f"{error} Nothing was charged: try again in a minute."
    if isinstance(error, PaymentError):
        return str(error)
    if isinstance(error, ImageRefused | NotAnImage):
        return f"{error} Nothing was spent."
    if isinstance(error, ModelNotAvailable) and not error.pickable:
        return str(error)
    return f"{error} Choose another model in the settings."


def model_failed(model: Model, error: AgentError, partial: bool) -> str:
    """A model that failed while answering: what was lost, and what to do."""
    what = "The answer above stopped part-way." if partial else "Your message was not answered."
    return (
        f"{model.label} could not answer: {error} {what} "
        "Try again in a moment, or choose another model in the settings."
    )

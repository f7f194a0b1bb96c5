"""What the chat side runs on, built once by `app.build` and handed to every handler.

A plain record of this deployment's parts: its settings, the database, the ledger, the model
catalogue and runner, the conversation graph (made at startup, once its checkpointer is open), who
is signed in, the channel that reaches a person's open chats on every replica, and the credit packs
with the payment providers that sell them, where images are kept and how fast each image model
has been, and the worker of long tasks. Nothing here opens or starts anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import chainlit as cl
from sqlalchemy.ext.asyncio import AsyncEngine

from agents import graph as conversation
from agents.catalog import Catalog
from agents.images import Pace
from agents.local import LocalRunner
from agents.prices import Pricing
from auth.providers import Provider
from auth.sessions import Standings
from credits.ledger import UNITS_PER_CREDIT
from credits.store import Ledger
from payments.crypto import CryptoPayments
from payments.inbox import Inbox
from payments.packs import Packs
from payments.provider import PaymentProvider
from payments.watcher import Watcher
from settings import Settings
from storage.images import Shelf
from tasks.worker import Worker
from ui.live import Live


@dataclass
class Deployment:
    settings: Settings
    engine: AsyncEngine
    ledger: Ledger
    catalog: Catalog
    runner: LocalRunner
    pricing: Pricing
    standings: Standings
    sign_in_providers: dict[str, Provider]
    auth_secret: str = field(repr=False)
    live: Live
    packs: Packs
    providers: dict[str, PaymentProvider]  # the payment providers offered, by name
    inbox: Inbox  # applies the providers' notifications
    shelf: Shelf  # where generated images are kept
    crypto: CryptoPayments | None = None  # crypto top-ups, where a chain is configured
    watcher: Watcher | None = None  # finds and credits the crypto payments
    pace: Pace = field(default_factory=Pace)  # how fast each image model has been
    graphs: dict[str, conversation.Conversation] = field(default_factory=dict)
    worker: Worker | None = None  # carries out long tasks (made at startup)

    @property
    def conversation(self) -> conversation.Conversation:
        return self.graphs["conversation"]

    @property
    def selling(self) -> bool:
        """Whether credits are sold here (by a payment provider or for crypto)."""
        return bool(self.providers) or self.crypto is not None

    @property
    def welcome_units(self) -> int:
        return self.settings.welcome_bonus_credits * UNITS_PER_CREDIT

    @property
    def low_units(self) -> int:
        return self.settings.low_balance_credits * UNITS_PER_CREDIT


def person() -> str:
    """The signed-in person of this chat."""
    user = cl.context.session.user
    assert user is not None, "every chat has a signed-in user"
    return user.identifier


def session_role() -> object:
    """The role this chat's session was given at sign-in (checked again for every admin act)."""
    user = cl.context.session.user
    return user.metadata.get("role") if user is not None else None


def public_base(d: Deployment) -> str:
    """The app's public URL: CHAINLIT_URL, or the origin this chat's page was loaded from (which
    the socket server accepted: api/edge.py restricts it to the app's own)."""
    if d.settings.chainlit_url:
        return d.settings.chainlit_url.rstrip("/")
    environ = cl.context.session.environ
    origin = environ.get("HTTP_ORIGIN")
    if origin:
        return str(origin).rstrip("/")
    scheme = environ.get("wsgi.url_scheme", "http")
    return f"{scheme}://{environ.get('HTTP_HOST', 'localhost:8000')}"

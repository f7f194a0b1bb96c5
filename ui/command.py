"""What a command is: a word after `/`, who may use it, what it does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import chainlit as cl

from ui.deployment import Deployment

Run = Callable[[Deployment, str, str, cl.Message], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    """`/<name> <text>`: `run(deployment, name, text, message)` carries it out."""

    name: str
    icon: str  # a Lucide icon name, shown in the composer's menu
    description: str
    run: Run
    admin: bool = False  # offered to and carried out for administrators only
    selling: bool = False  # offered only where credits are sold (a payment provider configured)
    crypto: bool = False  # offered only where crypto top-ups are configured
    images: bool = False  # offered only where an image model is enabled

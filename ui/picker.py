"""The model picker: every chat model with its price beside its name, "Auto", and each person's
choice kept for them (storage/preferences.py), so every new chat starts on the model they chose.

"Auto" is stored as itself, not as the model it meant at the time: it keeps meaning "the cheapest
enabled model able to do the request" as models are enabled, disabled or repriced.
"""

from __future__ import annotations

from decimal import Decimal

import chainlit as cl
from chainlit.input_widget import InputWidget, Select
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.catalog import AUTO, Catalog, Model
from agents.errors import AgentError
from agents.prices import Pricing
from storage import preferences
from ui import images
from ui.deployment import Deployment, person
from ui.errors import Refused
from ui.wallet import AUTHOR

WIDGET = "model"
USE_MODEL_ACTION = "use_model"


async def show(d: Deployment) -> None:
    """The chat settings: the model picker at the person's saved choice, then their image
    choices (ui/images.py)."""
    selected = await preferred(d.engine, d.catalog, person())
    chosen = await preferences.image_choices_of(d.engine, person())
    await settings_widget(d.catalog, d.pricing, selected, images.widgets(d, chosen)).send()


async def settings_update(d: Deployment, chosen: dict[str, object]) -> None:
    """Keep the person's choices for their next chats; an invalid one is put back (and an image
    choice the model does not take is refused, saying why)."""
    try:
        await images.settings_update(d, chosen)
    except (Refused, AgentError):
        await show(d)
        raise
    if WIDGET not in chosen:
        return
    if await remember(d.engine, d.catalog, person(), chosen[WIDGET]) is None:
        await show(d)


async def use_model(d: Deployment, action: cl.Action) -> None:
    """The "Use <cheaper model>" button of a shortfall message."""
    kept = await remember(d.engine, d.catalog, person(), action.payload.get("model"))
    if kept is None:
        return
    await show(d)
    await cl.Message(
        content=f"Switched to {d.catalog.choose(kept).label}: send your message again.",
        author=AUTHOR,
    ).send()


def price_label(model: Model, pricing: Pricing) -> str:
    """`Name · 0.0083 in / 0.017 out credits per 1K tokens`."""
    per_in = pricing.credits_per_1k(model.input_usd_per_mtok)
    per_out = pricing.credits_per_1k(model.output_usd_per_mtok)
    return f"{model.label} · {_short(per_in)} in / {_short(per_out)} out credits per 1K tokens"


def _short(credits: Decimal) -> str:
    """Two significant digits: enough to compare prices, short enough for a menu."""
    if not credits:
        return "0"
    return f"{credits:.2g}" if credits < 1 else f"{credits:,.2f}".rstrip("0").rstrip(".")


def choices(catalog: Catalog, pricing: Pricing) -> dict[str, str]:
    """The picker's items, label -> value: "Auto" first, then every enabled chat model."""
    items = {}
    able = catalog.enabled("chat")
    if able:
        cheapest = catalog.choose(AUTO)
        items[f"Auto · the cheapest able model (now {cheapest.label})"] = AUTO
    for model in able:
        items[price_label(model, pricing)] = model.id
    return items


def settings_widget(
    catalog: Catalog, pricing: Pricing, selected: str, more: list[InputWidget] | None = None
) -> cl.ChatSettings:
    missing = " ".join(f"Not offered: {pid} ({why})." for pid, why in sorted(catalog.down.items()))
    widgets: list[InputWidget] = [
        Select(
            id=WIDGET,
            label="Model",
            items=choices(catalog, pricing),
            initial_value=selected,
            description="Prices are in credits per 1,000 tokens read (in) and written (out)."
            + (f" {missing}" if missing else ""),
        ),
        *(more or []),
    ]
    return cl.ChatSettings(widgets)


def valid(catalog: Catalog, choice: object) -> str | None:
    """`choice` if it is one a person may pick now (Auto, or an enabled chat model), else None."""
    if choice == AUTO:
        return AUTO
    model = catalog.models.get(choice) if isinstance(choice, str) else None
    return model.id if model is not None and model.enabled and model.can("chat") else None


async def preferred(engine: AsyncEngine, catalog: Catalog, user: str) -> str:
    """The choice `user` made last, or the default when they made none or it is gone."""
    saved = await preferences.chosen_model(engine, user)
    return valid(catalog, saved) or catalog.default_id


async def remember(engine: AsyncEngine, catalog: Catalog, user: str, choice: object) -> str | None:
    """Keep `choice` for `user` if it is valid; returns what was kept."""
    kept = valid(catalog, choice)
    if kept is not None:
        await preferences.choose_model(engine, user, kept)
    return kept

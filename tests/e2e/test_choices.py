"""What a person chooses and is told in the real app: the model picker with prices, "Auto", and
the low-balance warning that comes once per crossing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from credits.ledger import UNITS_PER_CREDIT
from credits.store import Ledger
from tests.e2e.client import ChatSession, messages, steps
from tests.e2e.conftest import RunningApp, new_user, open_chat
from tests.e2e.test_metering import REMOTE, WELCOME, cost_line, price

pytestmark = pytest.mark.e2e

LOW = 100 * UNITS_PER_CREDIT  # the app's default LOW_BALANCE_CREDITS


def picker(chat: ChatSession) -> dict[str, Any]:
    """The model picker as last sent to this chat."""
    widgets = [d for n, d in chat.events if n == "chat_settings"][-1]
    [select] = [w for w in widgets if w["id"] == "model"]
    return select


async def test_the_picker_shows_prices_and_keeps_each_persons_choice(app: RunningApp) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    select = picker(chat)
    assert select["initial"] == "smollm2-135m"  # no choice yet: the default
    labels = {item["value"]: item["label"] for item in select["items"]}
    assert next(iter(labels)) == "auto"
    # $0.20 / $0.40 per million tokens at $0.024 a credit: 0.0083 and 0.017 credits per 1K
    assert labels["smollm2-135m"] == (
        "SmolLM2 135M (local) · 0.0083 in / 0.017 out credits per 1K tokens"
    )
    assert REMOTE in labels and "llama-3.1-8b" not in labels  # a provider without a key is hidden
    await chat.change_settings({"model": REMOTE})
    events = await chat.turn("Hello?")
    await chat.close()
    [step] = steps(events)
    assert step["name"] == "Llama 3.1 8B (vLLM)"

    later = await open_chat(app, user, password)  # a new chat, another day
    assert picker(later)["initial"] == REMOTE
    await later.close()
    other_user, other_password = await new_user(app)  # a choice is one person's own
    other = await open_chat(app, other_user, other_password)
    assert picker(other)["initial"] == "smollm2-135m"
    await other.close()


async def test_a_choice_that_is_not_offered_is_not_kept(app: RunningApp) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    start = len(chat.events)
    await chat.change_settings({"model": "llama-3.1-8b"})  # exists, but its provider is off
    await chat.wait_until(lambda events: any(n == "chat_settings" for n, _ in events), start)
    assert picker(chat)["initial"] == "smollm2-135m"  # put back at once
    await chat.close()
    again = await open_chat(app, user, password)
    assert picker(again)["initial"] == "smollm2-135m"
    await again.close()


async def test_auto_answers_with_the_cheapest_able_model(app: RunningApp, ledger: Ledger) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    await chat.change_settings({"model": "auto"})
    events = await chat.turn("Which model are you?")
    await chat.close()
    [step] = steps(events)
    assert step["name"] == "Llama 3.1 8B (vLLM)"  # $0.01/$0.02 beats the local $0.20/$0.40
    units, tokens_in, tokens_out = cost_line(events)
    assert units == price(REMOTE, tokens_in, tokens_out)
    [charge] = [t for t in await ledger.history(user) if t.kind == "post"]
    assert charge.meta["model"] == REMOTE


def low_warnings(events: list[tuple[str, Any]]) -> tuple[list[dict], list[dict]]:
    toasts = [d for n, d in events if n == "toast"]
    notes = [m for m in messages(events) if "Your balance is low" in m["output"]]
    return toasts, notes


async def test_the_low_balance_warning_comes_once_per_crossing(
    app: RunningApp, ledger: Ledger
) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    await chat.change_settings({"model": REMOTE})  # 1 unit an answer here
    await ledger.adjust(
        user, LOW - WELCOME, "test: bring to the threshold", "tests", f"t:{uuid.uuid4()}"
    )

    crossing = await chat.turn("First?")
    toasts, notes = low_warnings(crossing)
    assert [t["type"] for t in toasts] == ["warning"] and len(notes) == 1
    assert "99.999 credits" in notes[0]["output"] and notes[0]["name"] == "Credits"

    below = await chat.turn("Second?")  # still below: no second warning
    assert low_warnings(below) == ([], [])

    back = LOW - (await ledger.balance(user)).available  # back up to the threshold exactly
    await ledger.adjust(user, back, "test: top up", "tests", f"t:{uuid.uuid4()}")
    again = await chat.turn("Third?")
    await chat.close()
    toasts, notes = low_warnings(again)
    assert len(toasts) == 1 and len(notes) == 1
    assert (await ledger.balance(user)).available == LOW - cost_line(again)[0]

"""Metered turns in the real app: the welcome bonus, holds, charges, the badge, running out.

The ledger is read beside the running app (a second process on the same SQLite file, which the
ledger supports), and `verify` is run on it after each story.
"""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from agents.catalog import load_catalog
from agents.memory import upper_bound
from agents.prices import Pricing
from agents.prompts import SYSTEM_PROMPT
from credits.ledger import UNITS_PER_CREDIT
from credits.metering import welcome_id
from credits.store import Ledger
from settings import ROOT
from tests.e2e.client import ChatSession, messages, steps, streamed_text
from tests.e2e.conftest import RunningApp, new_user, open_chat

pytestmark = pytest.mark.e2e

PRICING = Pricing(Decimal("0.024"))
CATALOG = load_catalog(ROOT / "models.toml", lambda _: "set", "smollm2-135m")
WELCOME = 1000 * UNITS_PER_CREDIT
MAX_OUTPUT = 512  # the app's default MAX_OUTPUT_TOKENS
REMOTE = "vllm-llama-3.1-8b"  # served by the loopback fake provider


def cost_line(events: list[tuple[str, Any]]) -> tuple[int, int, int]:
    """(units, tokens in, tokens out) from the step under the answer."""
    [step] = steps(events)
    match = re.search(
        r"cost \*\*([\d,.]+) credits\*\* · ([\d,]+) tokens in · ([\d,]+) tokens out", step["output"]
    )
    assert match, step["output"]
    units = int(Decimal(match[1].replace(",", "")) * UNITS_PER_CREDIT)
    return units, int(match[2].replace(",", "")), int(match[3].replace(",", ""))


def badge_units(events: list[tuple[str, Any]]) -> int:
    """The balance the badge shows after `events` (its latest props)."""
    badges = [d for n, d in events if n == "element" and d.get("name") == "CreditBadge"]
    assert badges, [n for n, _ in events]
    return int(badges[-1]["props"]["units"])


def price(model_id: str, tokens_in: int, tokens_out: int) -> int:
    model = CATALOG.models[model_id]
    return PRICING.units(model.input_usd_per_mtok, model.output_usd_per_mtok, tokens_in, tokens_out)


def most_for(model_id: str, question: str) -> int:
    """The hold the app places for a first question (no memory yet) to `model_id`."""
    prompt = [SystemMessage(SYSTEM_PROMPT), HumanMessage(question)]
    tokens_in = min(upper_bound(prompt), CATALOG.models[model_id].context_length - MAX_OUTPUT)
    return price(model_id, tokens_in, MAX_OUTPUT)


async def test_a_turn_costs_exactly_its_reported_usage(app: RunningApp, ledger: Ledger) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    [welcome] = messages(chat.events, "assistant_message")
    assert "You have been given **1,000 credits**" in welcome["output"]
    assert badge_units(chat.events) == WELCOME

    events = await chat.turn("Name a colour.")
    await chat.close()
    units, tokens_in, tokens_out = cost_line(events)
    priced = price("smollm2-135m", tokens_in, tokens_out)
    assert units == priced > 0
    balance = await ledger.balance(user)
    assert balance.available == WELCOME - priced and balance.held == 0
    assert badge_units(events) == WELCOME - priced  # the badge moved without a reload
    [charge] = [t for t in await ledger.history(user) if t.kind == "post"]
    assert charge.amount == priced and charge.meta["model"] == "smollm2-135m"
    assert charge.meta["tokens_in"] == tokens_in and charge.meta["tokens_out"] == tokens_out


async def test_the_welcome_bonus_is_paid_once_to_two_sessions_at_once(
    app: RunningApp, ledger: Ledger
) -> None:
    user, password = await new_user(app)
    chats = await asyncio.gather(*(open_chat(app, user, password) for _ in range(2)))
    await asyncio.gather(*(c.close() for c in chats))
    welcomes = [t for t in await ledger.history(user) if t.transfer_id == welcome_id(user)]
    assert len(welcomes) == 1
    assert (await ledger.balance(user)).available == WELCOME
    again = await open_chat(app, user, password)  # a later sign-in: no second bonus
    await again.close()
    assert (await ledger.balance(user)).available == WELCOME
    [greeting] = messages(again.events, "assistant_message")
    assert "You have **1,000 credits**" in greeting["output"]


async def remote_chat(app: RunningApp) -> tuple[str, ChatSession]:
    """A new user's chat on the loopback provider (whose failures the tests choose)."""
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    await chat.change_settings({"model": REMOTE})
    return user, chat


async def test_a_failing_provider_charges_nothing(app: RunningApp, ledger: Ledger) -> None:
    user, chat = await remote_chat(app)
    with app.fake.behaving(mode="error"):
        failed = await chat.turn("Hello?")
    await chat.close()
    assert cost_line(failed)[0] == 0
    balance = await ledger.balance(user)
    assert balance.available == WELCOME and balance.held == 0
    [release] = [t for t in await ledger.history(user) if t.kind == "void"]
    assert release.hold is not None and release.hold.startswith("turn:")


async def test_a_broken_stream_charges_only_what_was_delivered(
    app: RunningApp, ledger: Ledger
) -> None:
    user, chat = await remote_chat(app)
    with app.fake.behaving(mode="drop", drop_after=3):
        broken = await chat.turn("Tell me something.")
    await chat.close()
    assert streamed_text(broken) == "Hello from the "
    units, tokens_in, tokens_out = cost_line(broken)
    [step] = steps(broken)
    assert "counted here: the provider reported no usage" in step["output"]
    assert tokens_out == len("Hello from the ") // 3 + 1  # the remote estimate, said so above
    assert units == price(REMOTE, tokens_in, tokens_out)
    assert units <= most_for(REMOTE, "Tell me something.")
    assert (await ledger.balance(user)).available == WELCOME - units


async def test_stop_mid_stream_charges_only_the_delivered_part(
    app: RunningApp, ledger: Ledger
) -> None:
    user, chat = await remote_chat(app)
    with app.fake.behaving(token_delay_s=0.2):
        start = len(chat.events)
        sending = asyncio.create_task(chat.send("Tell me a long story."))
        await chat.wait_until(lambda events: "Hello from " in streamed_text(events), start)
        await chat.sio.emit("stop")
        await sending
        await chat.wait_for_badge(start)
        stopped = chat.events[start:]
    await chat.close()
    delivered = streamed_text(stopped)
    assert delivered and delivered != app.fake.reply
    units, tokens_in, tokens_out = cost_line(stopped)
    assert tokens_out == len(delivered) // 3 + 1
    assert units == price(REMOTE, tokens_in, tokens_out)
    balance = await ledger.balance(user)
    assert balance.available == WELCOME - units and balance.held == 0


async def test_ten_sessions_at_once_with_credits_for_three(app: RunningApp, ledger: Ledger) -> None:
    user, password = await new_user(app)
    chats = [await open_chat(app, user, password) for _ in range(10)]
    question = "Say hi."
    most = most_for("smollm2-135m", question)
    budget = 3 * most + most // 2
    await ledger.adjust(user, budget - WELCOME, "test: credits for three answers", "tests", "adj:3")
    results = await asyncio.gather(*(c.turn(question) for c in chats))
    await asyncio.gather(*(c.close() for c in chats))
    answered = [r for r in results if steps(r)]
    refused = [r for r in results if not steps(r)]
    assert 3 <= len(answered) < 10
    for events in refused:
        [notice] = messages(events, "assistant_message")
        assert "Not enough credits for this answer" in notice["output"]
        assert "administrator" in notice["output"]
    spent = sum(cost_line(r)[0] for r in answered)
    balance = await ledger.balance(user)
    assert balance.held == 0 and balance.available == budget - spent >= 0

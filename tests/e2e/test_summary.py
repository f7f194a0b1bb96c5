"""`/summary`, a second kind of metered work beside chat answers, in the real app: priced per token
read by its own catalogue entry, held and charged on the same path, refused with nothing charged
when there is nothing to summarise or not enough credits."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from agents.catalog import load_catalog
from agents.prices import Pricing
from credits.ledger import UNITS_PER_CREDIT, Kind
from credits.store import Ledger
from settings import ROOT
from tests.e2e.client import messages, steps
from tests.e2e.conftest import RunningApp, new_user, open_chat

pytestmark = pytest.mark.e2e

PRICE = load_catalog(ROOT / "models.toml", lambda _: None, "smollm2-135m").price_of("summary")
PRICING = Pricing(Decimal("0.024"))


async def test_a_summary_is_charged_per_token_it_read(app: RunningApp, ledger: Ledger) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    await chat.turn("Name a colour.")
    before = await ledger.balance(user)

    events = await chat.turn("/summary")
    await chat.close()
    [summary] = [m for m in messages(events) if m["name"].startswith("Summary")]
    assert summary["output"].strip()
    [step] = steps(events)
    shown = re.search(r"cost \*\*([\d,.]+) credits\*\*", step["output"])
    assert shown, step["output"]
    [charge] = [t for t in await ledger.charges(user) if t.meta.get("kind") == "summary"]
    assert charge.kind is Kind.POST
    assert charge.amount == PRICING.work(PRICE, tokens_in=charge.meta["tokens_in"]) > 0
    assert int(Decimal(shown[1]) * UNITS_PER_CREDIT) == charge.amount
    after = await ledger.balance(user)
    assert after.available == before.available - charge.amount and after.held == 0


async def test_no_summary_without_a_conversation_or_the_credits(
    app: RunningApp, ledger: Ledger
) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    events = await chat.send("/summary")
    [refusal] = messages(events)
    assert refusal["isError"] and "nothing to summarise yet" in refusal["output"]

    await chat.turn("Name a colour.")
    balance = await ledger.balance(user)
    await ledger.adjust(user, -balance.available, "test: spent", "tests", "adj:summary")
    events = await chat.turn("/summary")
    await chat.close()
    [notice] = messages(events)
    assert "Not enough credits" in notice["output"]
    assert not steps(events)
    assert (await ledger.balance(user)).held == 0
    assert not [t for t in await ledger.history(user) if t.meta.get("kind") == "summary"]

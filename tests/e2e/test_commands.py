"""Chat commands in the real app: `/usage` with its chart, table and receipts; `/grant` and
`/adjust` for administrators only, refusing bad input without writing anything."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from credits.ledger import UNITS_PER_CREDIT
from credits.receipts import check_receipt
from credits.store import Ledger
from tests.e2e.client import ChatSession, messages
from tests.e2e.conftest import ADMIN, RunningApp, new_user, open_chat
from tests.e2e.test_metering import REMOTE, WELCOME, cost_line

pytestmark = pytest.mark.e2e


def said(events: list[tuple[str, Any]], kind: str = "assistant_message") -> str:
    return "\n".join(m["output"] for m in messages(events, kind))


async def test_usage_shows_spending_transfers_and_receipts_that_check(
    app: RunningApp, ledger: Ledger
) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    await chat.change_settings({"model": REMOTE})
    costs = [cost_line(await chat.turn(f"Question {n}?"))[0] for n in range(2)]

    report = await chat.send("", command="usage")
    text = said(report)
    assert "| Day | Work | Model | Credits |" in text
    spent = Decimal(sum(costs)) / UNITS_PER_CREDIT
    assert f"| Llama 3.1 8B (vLLM) | {spent:.3f} |" in text
    assert "Welcome bonus | +1,000" in text
    assert text.count("Answer (Llama 3.1 8B (vLLM))") == 2
    [chart] = [d for n, d in report if n == "element" and d["type"] == "plotly"]
    figure = json.loads(await chat.fetch_file(chart))
    [bars] = figure["data"]
    assert bars["type"] == "bar" and bars["name"] == "Chat · Llama 3.1 8B (vLLM)"
    assert sum(bars["y"]) == pytest.approx(float(spent))  # today's bar holds both answers
    receipts = [d for n, d in report if n == "action" and d["name"] == "receipt"]
    assert len(receipts) == len(await ledger.history(user))  # one button per transfer shown

    welcome = next(r for r in receipts if r["payload"]["transfer"].startswith("welcome:"))
    start = await press_receipt(chat, welcome)
    proof_text = said(chat.events[start:])
    assert f"**Receipt for `{welcome['payload']['transfer']}`: checks.**" in proof_text
    [saved] = [d for n, d in chat.events[start:] if n == "element" and d["type"] == "file"]
    assert saved["name"].startswith("receipt-welcome")
    proof = json.loads(await chat.fetch_file(saved))
    await chat.close()
    # The file the person keeps checks outside the app, against the ledger's public key...
    assert check_receipt(proof, ledger.public_key)
    assert f'"id":"{welcome["payload"]["transfer"]}"' in proof["entry"]
    # ...and a forged one does not.
    forged = {**proof, "entry": proof["entry"].replace('"amount":1000000', '"amount":9000000')}
    assert forged != proof and not check_receipt(forged, ledger.public_key)


def given(events: list[tuple[str, Any]]) -> bool:
    """A receipt's answer: its text and the file attached to it (sent as an event of its own)."""
    attached = any(n == "element" and d.get("type") == "file" for n, d in events)
    return attached and "Receipt for" in said(events)


async def press_receipt(chat: ChatSession, button: dict[str, Any]) -> int:
    """Press a receipt button as a person would: a transfer of the last second may not be in a
    signed checkpoint yet (receipts only read; one is signed every CHECKPOINT_EVERY_S, 1 s here),
    and the app says so: press again. The index of the events of the press that gave it."""
    for _ in range(10):
        start = len(chat.events)
        assert await chat.call_action(button) == 200
        await chat.wait_until(
            lambda ev: given(ev) or "no signed checkpoint covers" in said(ev), start
        )
        if given(chat.events[start:]):
            return start
        await asyncio.sleep(1)
    raise AssertionError("no checkpoint covered the transfer after 10 s")


async def test_a_receipt_for_someone_elses_transfer_is_not_given(
    app: RunningApp, ledger: Ledger
) -> None:
    victim, victim_password = await new_user(app)
    await (await open_chat(app, victim, victim_password)).close()
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    forged = {
        "id": str(uuid.uuid4()),
        "name": "receipt",
        "payload": {"transfer": f"welcome:{victim}"},
        "forId": "",
        "label": "Receipt #1",
    }
    start = len(chat.events)
    assert await chat.call_action(forged) == 200
    await chat.wait_until(lambda ev: "You have no transfer" in said(ev), start)
    assert "checks" not in said(chat.events[start:])
    await chat.close()


async def admin_chat(app: RunningApp) -> ChatSession:
    return await open_chat(app, *ADMIN)


async def test_an_admin_grants_and_adjusts_recorded_with_their_identity(
    app: RunningApp, ledger: Ledger
) -> None:
    user, password = await new_user(app)
    await (await open_chat(app, user, password)).close()
    admin = await admin_chat(app)
    commands = [d for n, d in admin.events if n == "set_commands"][-1]
    assert {c["id"] for c in commands} == {
        "task",
        "tasks",
        "usage",
        "summary",
        "signins",
        "password",
        "grant",
        "adjust",
        "disable",
        "enable",
        "logout",
        "invite",
    }

    message_id = str(uuid.uuid4())
    done = await admin.send(f"{user} 25.5 beta tester", command="grant", message_id=message_id)
    assert f"Granted **25.500 credits** for {user}" in said(done)
    assert (await ledger.balance(user)).available == WELCOME + 25_500
    [grant] = [t for t in await ledger.history(user) if t.code == "grant"]
    assert grant.meta == {"admin": ADMIN[0], "reason": "beta tester"}
    # The same message delivered again (a reconnect) grants nothing more.
    await admin.send(f"{user} 25.5 beta tester", command="grant", message_id=message_id)
    assert (await ledger.balance(user)).available == WELCOME + 25_500

    typed = await admin.send(f"/adjust {user.upper()} -0.5 refund for a bad answer")
    assert "Adjusted by **-0.500 credits**" in said(typed)
    assert (await ledger.balance(user)).available == WELCOME + 25_000
    [fix] = [t for t in await ledger.history(user) if t.code == "adjustment"]
    assert fix.meta == {"admin": ADMIN[0], "reason": "refund for a bad answer"}
    await admin.close()


@pytest.mark.parametrize(
    ("command", "text", "why"),
    [
        ("grant", "{user} abc because", "is not a number of credits"),
        ("grant", "{user} 0 because", "must be positive"),
        ("grant", "{user} -5 because", "use /adjust"),
        ("grant", "{user} 1.0001 because", "at most three decimals"),
        ("grant", "{user} 1e3 because", "is not a number of credits"),
        ("grant", "{user} NaN because", "is not a number of credits"),
        ("grant", "{user} 9999999999999 because", "above the largest allowed"),
        ("grant", "{user} 5", "Usage: /grant"),
        ("grant", "nobody@example.com 5 because", "There is no user 'nobody@example.com'"),
        ("adjust", "{user} -5000 because", "would take them below zero"),
        ("adjust", "{user} 0 because", "must be positive"),
    ],
)
async def test_a_bad_grant_is_refused_and_writes_nothing(
    app: RunningApp, ledger: Ledger, command: str, text: str, why: str
) -> None:
    user, password = await new_user(app)
    await (await open_chat(app, user, password)).close()
    before = await ledger.history(user)
    admin = await admin_chat(app)
    events = await admin.send(text.format(user=user), command=command)
    await admin.close()
    refusal = said(events)
    assert why in refusal and "Nothing was changed." in refusal
    assert await ledger.history(user) == before
    assert (await ledger.balance(user)).available == WELCOME


async def test_someone_who_is_not_an_admin_cannot_grant(app: RunningApp, ledger: Ledger) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    commands = [d for n, d in chat.events if n == "set_commands"][-1]
    assert {c["id"] for c in commands} == {
        "task",
        "tasks",
        "usage",
        "summary",
        "signins",
        "password",
    }  # not the admin's
    for attempt in (
        chat.send(f"{user} 500 for me", command="grant"),
        chat.send(f"/grant {user} 500 for me"),
        chat.send(f"{user} 500 for me", command="adjust"),
    ):
        events = await attempt
        assert "Only administrators can use" in said(events)
    await chat.close()
    assert [t.code for t in await ledger.history(user)] == ["welcome"]
    assert (await ledger.balance(user)).available == WELCOME

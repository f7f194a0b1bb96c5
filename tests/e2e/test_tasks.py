"""Long tasks through the real app process, with a scripted loopback provider (deterministic tool
calls) and the loopback Stripe: a three-step task runs, shows its steps and tool results live, is
charged its priced calls, and streams the rest into a page reloaded mid-task; the app killed
mid-task (SIGKILL) and started again resumes it, charging no call twice; a task paused on an empty
balance goes on by itself once a Stripe payment arrives; cancel stops it at once."""

from __future__ import annotations

import asyncio
import inspect
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from agents.catalog import load_catalog
from agents.prices import Pricing
from credits.store import Ledger
from settings import ROOT
from tests.e2e.client import ChatSession, login, messages
from tests.e2e.conftest import ADMIN, Tasker, ledger_beside, new_user
from tests.fakes.openai_server import tool_call, tower_task

MODEL = "vllm-llama-3.1-8b"
CATALOG = load_catalog(ROOT / "models.toml", {"VLLM_BASE_URL": "http://x"}.get, MODEL)
PRICING = Pricing(Decimal("0.024"))
NOTES = b"The tower is 30 m tall.\n"


@pytest.fixture
async def ledger(tasker: Tasker) -> AsyncIterator[Ledger]:
    async with ledger_beside(tasker.data_dir) as book:
        yield book


async def person(tasker: Tasker) -> tuple[str, ChatSession]:
    user, password = await new_user(tasker)  # type: ignore[arg-type]
    chat = ChatSession(tasker.base_url, await login(tasker.base_url, user, password))
    await chat.connect()
    await chat.wait_for_badge(0)
    return user, chat


async def start_task(chat: ChatSession, goal: str) -> str:
    """`/task` with the notes attached, then Start: the run's id."""
    notes = await chat.upload("notes.txt", NOTES, "text/plain")
    asked = await chat.send(f"/task {goal}", files=[notes])
    [start] = [d for n, d in asked if n == "action" and d.get("name") == "task_start"]
    quote = [m["output"] for m in messages(asked, "assistant_message") if "Start this task" in
             m["output"]]  # fmt: skip
    assert quote and "notes.txt" in quote[0] and "budget is **20 credits**" in quote[0]
    assert await chat.call_action(start) == 200
    return await run_of(chat)


def app_db(tasker: Tasker) -> sqlite3.Connection:
    db = sqlite3.connect(tasker.data_dir / "app.db")
    db.row_factory = sqlite3.Row
    return db


async def run_of(chat: ChatSession) -> str:
    """The run the chat shows (its Cancel button names it)."""
    data = await chat.wait_for_action("task_cancel")
    return str(data["payload"]["run"])


def runs_of(tasker: Tasker, user: str) -> list[str]:
    with app_db(tasker) as db:
        found = db.execute("SELECT id FROM task_runs WHERE owner = ? ORDER BY id", (user,))
        return [r[0] for r in found]


def row(tasker: Tasker, run_id: str) -> dict[str, Any]:
    with app_db(tasker) as db:
        found = db.execute("SELECT * FROM task_runs WHERE id = ?", (run_id,)).fetchone()
    return {**dict(found), "progress": json.loads(found["progress"])}


async def until_status(tasker: Tasker, run_id: str, *wanted: str, timeout: float = 60) -> dict:
    await until(lambda: row(tasker, run_id)["status"] in wanted, timeout)
    return row(tasker, run_id)


async def until(holds: Callable[[], bool | Awaitable[bool]], timeout: float) -> None:
    """Wait until `holds()` (polled: it reads another process's database)."""
    async with asyncio.timeout(timeout):
        while True:
            answer = holds()
            if await answer if inspect.isawaitable(answer) else answer:
                return
            await asyncio.sleep(0.05)


def task_text(events: list[tuple[str, Any]]) -> str:
    """The task's message as the page shows it last."""
    found = [m["output"] for m in messages(events, "assistant_message") if
             m["output"].startswith("**Task**")]  # fmt: skip
    return found[-1] if found else ""


def tool_steps(events: list[tuple[str, Any]]) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for name, data in events:
        if name in ("new_message", "update_message") and data.get("type") == "tool" and \
                data.get("name") in ("read_file", "calculator", "run_python"):  # fmt: skip
            latest[data["id"]] = {**latest.get(data["id"], {}), **data}
    return latest


async def charges_of(ledger: Ledger, user: str) -> list[Any]:
    return [t for t in await ledger.charges(user) if t.meta.get("kind") == "task"]


def priced(t: Any) -> int:
    meta = t.meta
    if meta["model"] == MODEL:
        return PRICING.tokens(CATALOG.get(MODEL), meta["tokens_in"], meta["tokens_out"])
    return PRICING.work(CATALOG.work[meta["model"]], calls=1)


async def test_a_task_runs_live_survives_a_reload_and_is_charged_its_priced_steps(
    tasker: Tasker, ledger: Ledger
) -> None:
    user, chat = await person(tasker)
    tasker.fake.script = tower_task()
    with tasker.fake.behaving(delay_s=0.4):
        run_id = await start_task(chat, "How tall is the tower, twice and thrice?")
        # Live: the plan's steps and the first tool's answer arrive while it runs.
        await chat.wait_until(lambda ev: any(
            s["name"] == "read_file" and "30 m tall" in s.get("output", "")
            for s in tool_steps(ev).values()), timeout=30)  # fmt: skip
        assert row(tasker, run_id)["status"] == "running"
        thread_id = chat.thread_id
        await chat.close()  # the tab closes mid-task; the page is loaded again
        back = ChatSession(tasker.base_url, chat.cookies, thread_id=thread_id)
        await back.connect()
        done = await until_status(tasker, run_id, "succeeded", "failed")
    assert done["status"] == "succeeded", done
    await back.wait_until(lambda ev: "The tower is 30 m; twice is 60" in task_text(ev), timeout=15)
    shown = tool_steps(back.events)
    assert sorted(s["name"] for s in shown.values()) == ["calculator", "read_file", "run_python"]
    assert any("90" in s["output"] for s in shown.values() if s["name"] == "run_python")
    steps_shown = {d["name"] for n, d in back.events
                   if n in ("new_message", "update_message") and d.get("type") == "run"}  # fmt: skip
    assert {"✓ Step 1: Read the notes", "✓ Step 3: Check with Python"} <= steps_shown

    charged = await charges_of(ledger, user)
    assert len(charged) == 11  # 8 model calls and 3 tools, each once
    assert all(t.amount == priced(t) for t in charged)
    assert done["spent"] == sum(t.amount for t in charged) > 0
    assert "done" in task_text(back.events) and "of 20 credits spent" in task_text(back.events)
    listed = await back.send("/tasks")
    assert "How tall is the tower" in "".join(
        m["output"] for m in messages(listed, "assistant_message")
    )
    await back.close()


async def test_a_task_killed_with_the_app_resumes_after_a_restart_without_charging_twice(
    tasker: Tasker, ledger: Ledger
) -> None:
    user, chat = await person(tasker)
    tasker.fake.script = tower_task()
    with tasker.fake.behaving(delay_s=0.5):
        run_id = await start_task(chat, "The tower again, killed on the way")
        await until(lambda: row(tasker, run_id)["progress"].get("actions", 0) >= 4, 30)
        await asyncio.sleep(0.2)  # inside the next step
        tasker.kill()
        killed = row(tasker, run_id)
        assert killed["status"] == "running" and killed["attempt"] == 1
        tasker.start()
        done = await until_status(tasker, run_id, "succeeded", "failed")
    assert done["status"] == "succeeded" and done["attempt"] == 2, done
    assert done["progress"]["answer"] == "The tower is 30 m; twice is 60, three times 90."
    charged = await charges_of(ledger, user)
    actions = sorted(int(t.transfer_id.split(":")[2].split(".")[0]) for t in charged)
    assert actions == list(range(1, 12))  # every call charged once, over both attempts
    assert done["spent"] == sum(t.amount for t in charged)
    assert (await ledger.balance(user)).held == 0


async def test_a_task_paused_on_an_empty_balance_resumes_by_itself_after_a_stripe_top_up(
    tasker: Tasker, ledger: Ledger
) -> None:
    user, chat = await person(tasker)
    available = (await ledger.balance(user)).available
    await ledger.adjust(user, -available, "test: an empty balance", ADMIN[0], f"adj:{user}")
    tasker.fake.script = tower_task()
    run_id = await start_task(chat, "The tower, on credits I do not have yet")
    paused = await until_status(tasker, run_id, "paused")
    assert paused["needs"] > 0 and "and you have 0." in (paused["paused_reason"] or "")
    await chat.wait_until(lambda ev: "**Paused.**" in task_text(ev), timeout=10)
    top_up = await chat.wait_for_action("buy_credits")
    assert top_up["forId"] == row(tasker, run_id)["message_id"]  # on the task's message

    link = await pay_link(chat)
    async with httpx.AsyncClient(cookies=chat.cookies, follow_redirects=True, timeout=30) as web:
        session_id = link.rsplit("/", 1)[1]
        await web.post(f"{tasker.stripe.url}/checkout/{session_id}/pay", data={"method": "card"})
    done = await until_status(tasker, run_id, "succeeded", "failed", timeout=30)
    assert done["status"] == "succeeded", done
    await chat.wait_until(lambda ev: "The tower is 30 m; twice is 60" in task_text(ev), timeout=15)
    charged = await charges_of(ledger, user)
    assert len(charged) == 11 and done["spent"] == sum(t.amount for t in charged)


async def pay_link(chat: ChatSession) -> str:
    events = await chat.send("/buy")
    [button] = [a for n, a in events if n == "action" and a.get("payload") ==
                {"pack": "starter", "provider": "stripe"}]  # fmt: skip
    start = len(chat.events)
    assert await chat.call_action(button) == 200
    await chat.wait_until(lambda ev: any("Pay with" in str(d.get("output", "")) for _, d in ev),
                          start)  # fmt: skip
    said = next(d["output"] for _, d in chat.events[start:] if "Pay with" in str(d.get("output")))
    return said.split("](", 1)[1].split(")", 1)[0]


async def test_cancel_stops_a_task_at_once_and_holds_nothing_more(
    tasker: Tasker, ledger: Ledger
) -> None:
    user, chat = await person(tasker)
    tasker.fake.script = [
        {"content": "1. Wait a long time"},
        tool_call("run_python", code="import time; time.sleep(60)"),
    ]
    run_id = await start_task(chat, "Wait for a minute")

    async def program_runs() -> bool:
        working = row(tasker, run_id)["progress"].get("actions", 0) >= 2
        return working and (await ledger.balance(user)).held > 0

    await until(program_runs, 20)
    await asyncio.sleep(0.5)  # the program runs
    [cancel] = [d for n, d in chat.events if n == "action" and d.get("name") == "task_cancel"][:1]
    assert await chat.call_action(cancel) == 200
    done = await until_status(tasker, run_id, "cancelled", timeout=5)

    async def nothing_held() -> bool:
        return (await ledger.balance(user)).held == 0

    await until(nothing_held, 5)
    charged = await charges_of(ledger, user)
    assert [t.meta["model"] for t in charged] == [MODEL, MODEL]  # the cut-off program is free
    assert done["spent"] == sum(t.amount for t in charged)
    await chat.wait_until(lambda ev: "cancelled" in task_text(ev), timeout=10)
    again = await chat.send("/tasks")
    assert "cancelled" in "".join(m["output"] for m in messages(again, "assistant_message"))


async def test_bad_requests_for_a_task_are_refused_and_cost_nothing(
    tasker: Tasker, ledger: Ledger
) -> None:
    user, chat = await person(tasker)
    before = await ledger.balance(user)

    async def said(text: str, files: list[dict[str, Any]] | None = None) -> str:
        events = await chat.send(text, files=files)
        return "\n".join(d.get("output", "") for n, d in events if n == "new_message")

    assert "Say what the task should do" in await said("/task")
    assert "at most 2,000 characters" in await said("/task " + "x" * 2001)
    binary = await chat.upload("data.csv", b"\x00\x01binary\x00" * 10, "text/csv")
    assert "data.csv is not a text file" in await said("/task sum the file", [binary])
    many = [await chat.upload(f"f{n}.txt", b"text", "text/plain") for n in range(6)]
    assert "at most 5 files" in await said("/task read them all", many)
    assert not [d for n, d in chat.events if n == "action" and d.get("name") == "task_start"]
    with app_db(tasker) as db:
        assert (
            db.execute("SELECT count(*) FROM task_runs WHERE owner = ?", (user,)).fetchone()[0] == 0
        )
    after = await ledger.balance(user)
    assert (after.available, after.held) == (before.available, 0)
    # Another person's run cannot be cancelled: refused, the run goes on.
    other_user, other = await person(tasker)
    tasker.fake.script = tower_task()
    with tasker.fake.behaving(delay_s=0.3):
        run_id = await start_task(other, "The tower, not yours to cancel")
        refused = await chat.call_action({"name": "task_cancel", "payload": {"run": run_id},
                                          "id": "x", "forId": "y"})  # fmt: skip
        assert refused == 200
        await chat.wait_until(lambda ev: "not yours" in task_or_quote(ev, "new_message"))
        done = await until_status(tasker, run_id, "succeeded", "failed", "cancelled")
    assert done["status"] == "succeeded" and done["owner"] == other_user


async def test_a_request_that_needs_several_steps_is_proposed_as_a_task(tasker: Tasker) -> None:
    _, chat = await person(tasker)
    events = await chat.send("Research the history of lighthouses in Brittany")
    route = [d for n, d in events if n == "new_message" and d.get("name") == "Route"]
    assert route and "several steps" in route[0]["output"]
    assert [d for n, d in events if n == "action" and d.get("name") == "task_start"]
    assert "Start this task?" in task_or_quote(events)


def task_or_quote(events: list[tuple[str, Any]], event: str = "") -> str:
    """What the app said (in `event`s only, when given)."""
    if event:
        return "\n".join(str(d.get("output", "")) for n, d in events if n == event)
    return "\n".join(m["output"] for m in messages(events, "assistant_message"))


async def test_deleting_a_chat_stops_its_task(tasker: Tasker, ledger: Ledger) -> None:
    user, chat = await person(tasker)
    tasker.fake.script = [
        {"content": "1. Wait a long time"},
        tool_call("run_python", code="import time; time.sleep(60)"),
    ]
    run_id = await start_task(chat, "Wait while my chat is deleted")
    await until(lambda: row(tasker, run_id)["progress"].get("actions", 0) >= 2, 20)
    async with httpx.AsyncClient(base_url=tasker.base_url, cookies=chat.cookies) as http:
        gone = await http.request("DELETE", "/project/thread", json={"threadId": chat.thread_id})
    assert gone.status_code == 200
    done = await until_status(tasker, run_id, "cancelled", timeout=10)
    assert done["outcome"] == "Its chat was deleted."

    async def nothing_held() -> bool:
        return (await ledger.balance(user)).held == 0

    await until(nothing_held, 5)


def waiting_task(body: dict[str, Any]) -> dict[str, Any]:
    """Every task plans one step and runs a program that sleeps for a minute."""
    if not body.get("tools"):
        return {"content": "1. Wait"}
    if body["messages"][-1]["role"] == "tool":
        return {"content": "Waited."}
    return tool_call("run_python", code="import time; time.sleep(60)")


async def test_a_person_may_have_only_so_many_tasks_going(tasker: Tasker, ledger: Ledger) -> None:
    user, chat = await person(tasker)
    with tasker.fake.behaving(respond=waiting_task):
        early = await chat.send("/task a fourth one, quoted early")
        late_start = [d for n, d in early if n == "action" and d.get("name") == "task_start"][-1]
        for n in range(3):  # TASK_MOST_GOING
            asked = await chat.send(f"/task wait number {n}")
            [start] = [e for name, e in asked if name == "action" and e.get("name") == "task_start"]
            assert await chat.call_action(start) == 200
            await until(lambda n=n: len(runs_of(tasker, user)) == n + 1, 10)
        going = runs_of(tasker, user)
        refused = await chat.send("/task one too many")
        assert "You have 3 tasks going already" in task_or_quote(refused, "new_message")
        assert not [d for n, d in refused if n == "action" and d.get("name") == "task_start"]
        mark = len(chat.events)
        assert await chat.call_action(late_start) == 200  # quoted before: refused at Start
        await chat.wait_until(lambda ev: "3 tasks going" in task_or_quote(ev, "new_message"), mark)
        assert runs_of(tasker, user) == going  # three, still
        for run_id in going:
            cancel = {"name": "task_cancel", "payload": {"run": run_id}, "id": run_id, "forId": "x"}
            assert await chat.call_action(cancel) == 200
            await until_status(tasker, run_id, "cancelled", timeout=10)

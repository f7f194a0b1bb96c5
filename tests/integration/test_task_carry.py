"""A long task carried out against the scripted loopback provider, on SQLite and PostgreSQL: every
model and tool call charged once at its price; paused on credits and on its budget and resumed
from where it stood; a failing provider retried, then the run failed; cancelled mid-tool with
nothing left held; an attempt's dead hold released and a paid step not charged again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from agents import tasks as task_graph
from agents.catalog import Catalog, load_catalog
from agents.checkpoints import open_checkpointer
from agents.local import LocalRunner
from agents.prices import Pricing
from credits import metering
from credits.ledger import Kind
from credits.store import Ledger
from settings import ROOT
from storage import runs
from storage.images import Folder
from tasks import files
from tasks.carry import Workplace, carry_out
from tests.fakes.openai_server import FakeOpenAI, tool_call, tower_task
from tests.integration.test_runs import lapse

MODEL = "vllm-llama-3.1-8b"
OWNER = "ann@example.com"


@pytest.fixture
def catalog(fake: FakeOpenAI) -> Catalog:
    fake.script.clear()
    fake.requests.clear()
    fake.answered.clear()
    fake.mode = "ok"
    return load_catalog(ROOT / "models.toml", {"VLLM_BASE_URL": fake.base_url}.get, MODEL)


@pytest.fixture
async def place(
    database_url: str, engine: AsyncEngine, ledger: Ledger, catalog: Catalog, tmp_path: Path
) -> AsyncIterator[Workplace]:
    told: list[str] = []

    async def tell(owner: str, run_id: str) -> None:
        told.append(run_id)

    async with open_checkpointer(database_url, tmp_path) as saver:
        yield Workplace(
            engine, ledger, task_graph.build(saver), catalog,
            LocalRunner(tmp_path / "none.gguf", 512, 1), Pricing(Decimal("0.024")),
            Folder(tmp_path / "shelf"), tmp_path / "scratch", tell, MODEL, 256, 10, 900,
        )  # fmt: skip
    await metering.finish_settling()


async def new_run(place: Workplace, budget: int = 50_000) -> runs.Run:
    run_id = runs.new_id()
    names = await files.keep(place.shelf, run_id, [("notes.txt", b"The tower is 30 m tall.\n")])
    return await runs.start(
        place.engine, OWNER, "thread-1", "How tall is the tower, twice and thrice?", budget,
        files=tuple(names), run_id=run_id,
    )  # fmt: skip


async def claim_and_carry(place: Workplace, worker: str = "w1") -> runs.Run:
    claimed = await runs.claim(place.engine, worker, 30)
    assert claimed is not None
    await carry_out(place, claimed, worker)
    found = await runs.get(place.engine, claimed.id)
    assert found is not None
    return found


async def task_charges(ledger: Ledger) -> list[Any]:
    return [t for t in await ledger.charges(OWNER) if t.meta.get("kind") == "task"]


async def test_a_three_step_task_charges_each_call_once_at_its_price(
    place: Workplace, ledger: Ledger, fake: FakeOpenAI
) -> None:
    await ledger.grant(OWNER, 100_000, "grant:t1")
    fake.script = tower_task()
    run = await new_run(place)
    done = await claim_and_carry(place)
    assert done.status == "succeeded", done.outcome
    plan = done.progress["plan"]
    assert [p["status"] for p in plan] == ["done", "done", "done"]
    assert [c["tool"] for c in done.progress["calls"]] == ["read_file", "calculator", "run_python"]
    assert "The tower is 30 m tall." in done.progress["calls"][0]["result"]
    assert "90" in done.progress["calls"][2]["result"]
    assert done.progress["answer"] == "The tower is 30 m; twice is 60, three times 90."

    charged = await task_charges(ledger)
    assert len(charged) == 11  # 8 model calls, 3 tools: each once
    model = place.catalog.get(MODEL)
    for t in charged:
        meta = t.meta
        if meta["model"] == MODEL:
            assert t.amount == place.pricing.tokens(model, meta["tokens_in"], meta["tokens_out"])
        else:
            assert t.amount == place.pricing.work(place.catalog.work[meta["model"]], calls=1)
    spent = sum(t.amount for t in charged)
    assert done.spent == spent > 0
    balance = await ledger.balance(OWNER)
    assert (balance.available, balance.held) == (100_000 - spent, 0)
    assert {t.transfer_id.rsplit(".", 1)[1] for t in charged} == {"1/post"}  # attempt 1
    assert len(fake.requests) == 8 and run.id in {t.meta["run"] for t in charged}


async def test_a_task_paused_for_credits_goes_on_where_it_stood_once_they_arrive(
    place: Workplace, ledger: Ledger, fake: FakeOpenAI
) -> None:
    fake.script = tower_task()
    await ledger.grant(OWNER, 8, "grant:little")  # a few calls, not Python (9)
    run = await new_run(place)
    paused = await claim_and_carry(place)
    assert paused.status == "paused" and paused.needs > 0, paused
    assert "you have" in (paused.paused_reason or "")
    before = await task_charges(ledger)
    assert 0 < len(before) < 11
    assert await runs.wake(place.engine, OWNER, available=paused.needs - 1) == []  # not enough
    await ledger.grant(OWNER, 100_000, "grant:topup")
    available = (await ledger.balance(OWNER)).available
    assert await runs.wake(place.engine, OWNER, available=available) == [run.id]
    done = await claim_and_carry(place)
    assert done.status == "succeeded" and done.attempt == 2
    after = await task_charges(ledger)
    steps = [int(t.transfer_id.split(":")[2].split(".")[0]) for t in after]
    assert sorted(steps) == list(range(1, 12))  # each action charged once over both attempts
    assert done.spent == sum(t.amount for t in after)
    assert (await ledger.balance(OWNER)).held == 0


async def test_a_task_over_its_budget_pauses_and_asks_for_more(
    place: Workplace, ledger: Ledger, fake: FakeOpenAI
) -> None:
    await ledger.grant(OWNER, 100_000, "grant:t3")
    fake.script = tower_task()
    run = await new_run(place, budget=8)
    paused = await claim_and_carry(place)
    assert paused.status == "paused" and paused.needs == 0
    assert "budget" in (paused.paused_reason or "")
    assert 0 < paused.spent <= 8
    assert await runs.raise_budget(place.engine, run.id, OWNER, 50_000)
    assert await runs.wake(place.engine, OWNER, run.id) == [run.id]
    done = await claim_and_carry(place)
    assert done.status == "succeeded"
    assert len(await task_charges(ledger)) == 11


async def test_a_failing_provider_is_tried_again_later_then_the_run_fails(
    place: Workplace, ledger: Ledger, fake: FakeOpenAI
) -> None:
    await ledger.grant(OWNER, 100_000, "grant:t4")
    run = await new_run(place)
    with fake.behaving(mode="error"):
        first = await claim_and_carry(place)
        assert (first.status, first.failures) == ("pending", 1)
        assert await runs.claim(place.engine, "w1", 30) is None  # not before its pause
        for _ in range(2):
            await _due_now(place.engine, run.id)
            last = await claim_and_carry(place)
    assert last.status == "failed" and "failed 3 times" in (last.outcome or "")
    assert "upstream exploded" in (last.outcome or "") or "500" in (last.outcome or "")
    balance = await ledger.balance(OWNER)
    assert (balance.available, balance.held) == (100_000, 0)  # nothing delivered, nothing paid


async def _due_now(engine: AsyncEngine, run_id: str) -> None:
    from sqlalchemy import update

    async with engine.begin() as conn:
        await conn.execute(
            update(runs.task_runs).where(runs.task_runs.c.id == run_id).values(not_before=None)
        )


async def test_a_task_cancelled_during_a_tool_call_stops_at_once_with_nothing_held(
    place: Workplace, ledger: Ledger, fake: FakeOpenAI
) -> None:
    await ledger.grant(OWNER, 100_000, "grant:t5")
    fake.script = [
        {"content": "1. Wait"},
        tool_call("run_python", code="import time; time.sleep(60)"),
    ]
    run = await new_run(place)
    claimed = await runs.claim(place.engine, "w1", 30)
    assert claimed is not None
    working = asyncio.create_task(carry_out(place, claimed, "w1"))
    for _ in range(200):
        if (await ledger.balance(OWNER)).held and len(fake.requests) >= 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the program runs
    assert await runs.cancel(place.engine, run.id, OWNER)
    working.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(working, 5)
    await metering.finish_settling()
    found = await runs.get(place.engine, run.id)
    assert found is not None and found.status == "cancelled"
    balance = await ledger.balance(OWNER)
    charged = await task_charges(ledger)
    assert balance.held == 0
    assert [t.meta["model"] for t in charged] == [MODEL, MODEL]  # the tool was not charged
    assert balance.available == 100_000 - sum(t.amount for t in charged)


async def test_a_dead_attempts_hold_is_released_and_a_paid_step_runs_again_free(
    ledger: Ledger,
) -> None:
    await ledger.grant(OWNER, 10_000, "grant:t6")
    work = metering.Work("task", 100, {"model": "m"})
    # Attempt 1 held step 1 and died: attempt 2 releases its hold and holds its own.
    dead = await metering.hold_step(ledger, OWNER, work, "task:run-x:1", 1, 1, 900)
    assert isinstance(dead, metering.Meter)
    again = await metering.hold_step(ledger, OWNER, work, "task:run-x:1", 2, 1, 900)
    assert isinstance(again, metering.Meter) and again.transfer_id == "task:run-x:1.2"
    released = await ledger.transfer("task:run-x:1.1/void")
    assert released is not None and released.kind is Kind.VOID
    assert (await ledger.balance(OWNER)).held == 100
    # Attempt 2 charged step 1 and died before saving it: attempt 3 runs it free.
    again.use(40)
    await again.close()
    paid = await metering.hold_step(ledger, OWNER, work, "task:run-x:1", 3, 1, 900)
    assert not isinstance(paid, metering.Meter)
    assert (paid.transfer_id, paid.amount) == ("task:run-x:1.2/post", 40)
    # Attempts before `since` are not looked at (they saved a later state).
    fresh = await metering.hold_step(ledger, OWNER, work, "task:run-x:1", 4, 3, 900)
    assert isinstance(fresh, metering.Meter) and fresh.transfer_id == "task:run-x:1.4"
    await fresh.close()
    assert (await ledger.balance(OWNER)).available == 10_000 - 40


async def test_a_charge_settled_just_before_its_process_died_counts_against_the_budget(
    place: Workplace, ledger: Ledger, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger settles an action's charge, then the run's row adds it to `spent`: two
    transactions (two databases on SQLite). A process killed between them must not leave the
    charge out of what the run spent, or the run spends past its budget."""
    await ledger.grant(OWNER, 100_000, "grant:t8")
    fake.script = tower_task()
    run = await new_run(place)
    dying = asyncio.Event()

    async def die_before_spending(*args: Any) -> bool:
        dying.set()
        await asyncio.Event().wait()  # the process is gone: nothing after this runs
        return False

    monkeypatch.setattr(runs, "spend", die_before_spending)
    claimed = await runs.claim(place.engine, "w1", 30)
    assert claimed is not None
    working = asyncio.create_task(carry_out(place, claimed, "w1"))
    await asyncio.wait_for(dying.wait(), 10)
    working.cancel()
    await asyncio.gather(working, return_exceptions=True)
    first = await task_charges(ledger)
    assert len(first) == 1  # the first action was charged, its spending not recorded

    monkeypatch.undo()
    await lapse(place.engine, run.id)
    done = await claim_and_carry(place, "w2")
    assert done.status == "succeeded" and done.attempt == 2, done.outcome
    charged = await task_charges(ledger)
    assert len(charged) == 11  # the first action was not charged again
    assert done.spent == sum(t.amount for t in charged)


class BrokenShelf(Folder):
    """A file store that has gone away."""

    async def get(self, key: str) -> bytes | None:
        raise OSError("the store is away")


async def test_a_failure_of_ours_is_logged_tried_again_then_ends_the_run(
    place: Workplace, ledger: Ledger, fake: FakeOpenAI, tmp_path: Path
) -> None:
    await ledger.grant(OWNER, 100_000, "grant:t7")
    run = await new_run(place)  # its file kept while the store was there
    broken = replace(place, shelf=BrokenShelf(tmp_path / "shelf"))
    first = await claim_and_carry(broken)
    assert (first.status, first.failures) == ("pending", 1)
    assert "An error here stopped it (ref" in first.progress["note"]
    for _ in range(2):
        await _due_now(place.engine, run.id)
        last = await claim_and_carry(broken)
    assert last.status == "failed" and "failed 3 times in a row" in (last.outcome or "")
    assert fake.requests == []  # nothing was asked of the model
    balance = await ledger.balance(OWNER)
    assert (balance.available, balance.held) == (100_000, 0)

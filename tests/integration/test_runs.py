"""Long tasks' runs on SQLite and PostgreSQL: claimed once, leases taken over, paused and woken,
each change made only by whoever may make it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import runs


async def test_a_run_goes_from_pending_to_its_end_by_its_worker(engine: AsyncEngine) -> None:
    run = await runs.start(engine, "ann", "t1", "count the primes below 100", 5000)
    assert (run.status, run.attempt, run.spent) == ("pending", 0, 0)
    claimed = await runs.claim(engine, "w1", 30)
    assert claimed is not None and (claimed.id, claimed.status, claimed.attempt) == (
        run.id, "running", 1,
    )  # fmt: skip
    assert await runs.claim(engine, "w2", 30) is None  # nothing else to do
    assert await runs.heartbeat(engine, claimed, "w1", 30)
    assert not await runs.heartbeat(engine, claimed, "w2", 30)  # not w2's
    assert await runs.spend(engine, claimed, "w1", 1, 700)
    assert not await runs.spend(engine, claimed, "w2", 2, 700)  # not w2's
    assert not await runs.spend(engine, claimed, "w1", 1, 700)  # action 1 is counted already
    assert await runs.finish(engine, claimed, "w1", "succeeded", "25 primes")
    done = await runs.get(engine, run.id, "ann")
    assert done is not None and (done.status, done.spent, done.outcome) == (
        "succeeded", 700, "25 primes",
    )  # fmt: skip
    assert await runs.get(engine, run.id, "bob") is None
    assert not await runs.cancel(engine, run.id, "ann")  # ended: nothing to cancel


async def test_racing_workers_claim_each_run_once(engine: AsyncEngine) -> None:
    started = [await runs.start(engine, f"p{n}", None, "goal", 100) for n in range(12)]

    async def worker(name: str) -> list[str]:
        mine = []
        while (run := await runs.claim(engine, name, 30)) is not None:
            mine.append(run.id)
        return mine

    claimed = await asyncio.gather(*(worker(f"w{n}") for n in range(4)))
    every = [run_id for mine in claimed for run_id in mine]
    assert sorted(every) == sorted(r.id for r in started)  # each once, none lost


async def test_a_dead_workers_run_is_taken_over_after_its_lease(engine: AsyncEngine) -> None:
    await runs.start(engine, "ann", None, "goal", 100)
    first = await runs.claim(engine, "dies", 30)
    assert first is not None
    assert await runs.claim(engine, "other", 30) is None  # its lease holds
    await lapse(engine, first.id)  # the worker stopped renewing it: its lease runs out
    second = await runs.claim(engine, "other", 30)
    assert second is not None and second.id == first.id and second.attempt == 2
    assert not await runs.heartbeat(engine, first, "dies", 30)  # it would stop, were it alive
    assert not await runs.finish(engine, first, "dies", "failed", "late")
    assert await runs.finish(engine, second, "other", "succeeded", "done")


async def test_a_paused_run_waits_until_it_is_woken(engine: AsyncEngine) -> None:
    run = await runs.start(engine, "ann", None, "goal", 100)
    other = await runs.start(engine, "bob", None, "goal", 100)
    claimed = await runs.claim(engine, "w", 30)
    assert claimed is not None and claimed.id == run.id
    assert await runs.pause(engine, claimed, "w", "credits: 12 needed, 3 available")
    paused = await runs.get(engine, run.id)
    assert paused is not None and paused.paused_reason == "credits: 12 needed, 3 available"
    next_up = await runs.claim(engine, "w", 30)
    assert next_up is not None and next_up.id == other.id  # a paused run is not claimed
    assert await runs.wake(engine, "bob") == []  # bob's run is not paused
    assert await runs.wake(engine, "ann") == [run.id]
    again = await runs.claim(engine, "w", 30)
    assert again is not None and again.id == run.id and again.attempt == 2


async def test_only_the_owner_cancels_or_raises_the_budget(engine: AsyncEngine) -> None:
    run = await runs.start(engine, "ann", None, "goal", 100)
    claimed = await runs.claim(engine, "w", 30)
    assert claimed is not None and await runs.spend(engine, claimed, "w", 1, 80)
    assert not await runs.raise_budget(engine, run.id, "bob", 500)
    assert not await runs.raise_budget(engine, run.id, "ann", 50)  # below what it spent
    assert await runs.raise_budget(engine, run.id, "ann", 500)
    assert not await runs.cancel(engine, run.id, "bob")
    assert await runs.cancel(engine, run.id, "ann")
    assert not await runs.heartbeat(engine, claimed, "w", 30)  # its worker learns it and stops
    assert [r.status for r in await runs.of_owner(engine, "ann")] == ["cancelled"]


async def lapse(engine: AsyncEngine, run_id: str) -> None:
    """The lease of run `run_id` ran out (as it does when its worker stops renewing it)."""
    async with engine.begin() as conn:
        await conn.execute(
            update(runs.task_runs)
            .where(runs.task_runs.c.id == run_id)
            .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )

"""PostgreSQL's group commit (credits/postgres.Batcher): concurrent requests grouped into batches,
a burst spread over several connections, each request answered with its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from credits.postgres import Batcher


class Backend:
    """Stands in for the batch call: records each batch and how many ran at once."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self.fail_on = fail_on

    async def run(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(0.01)  # a round trip: later requests gather meanwhile
            if self.fail_on in items:
                raise ConnectionError("the database went away")
            return [item * 10 for item in items]
        finally:
            self.running -= 1


async def test_a_burst_is_split_into_batches_that_run_side_by_side() -> None:
    backend = Backend()
    batcher: Batcher[int, int] = Batcher(backend.run)  # as the ledger makes them
    results = await asyncio.gather(*(batcher.submit(i) for i in range(64)))
    assert results == [i * 10 for i in range(64)]  # each request its own outcome
    assert max(len(b) for b in backend.batches) <= 32
    assert sorted(i for b in backend.batches for i in b) == list(range(64))  # each once
    assert backend.most_running >= 2  # the 64 did not wait for one connection


async def test_no_more_batches_at_once_than_its_slots() -> None:
    backend = Backend()
    batcher: Batcher[int, int] = Batcher(backend.run, size=4, parallel=2)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(40)))
    assert results == [i * 10 for i in range(40)]
    assert backend.most_running == 2
    assert max(len(b) for b in backend.batches) <= 4


async def test_a_failed_batch_fails_only_its_own_requests() -> None:
    backend = Backend(fail_on=3)
    batcher: Batcher[int, int] = Batcher(backend.run, size=8, parallel=2)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(24)), return_exceptions=True)
    [failed] = [b for b in backend.batches if 3 in b]
    for i, outcome in enumerate(outcomes):
        if i in failed:
            assert isinstance(outcome, ConnectionError)
        else:
            assert outcome == i * 10
    with pytest.raises(ConnectionError):  # and the batcher still serves the next ones
        await batcher.submit(3)
    assert await batcher.submit(4) == 40

"""Callers give up at any moment (a Stop press cancels the turn waiting on its hold), steps after
a commit fail, and the writer itself may die: the ledger keeps serving and loses nothing.

On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from credits import sqlite
from credits.errors import CreditsError
from credits.ledger import Balance
from credits.store import Ledger
from credits.verify import verify
from tests.credits.conftest import Clock

TURN = 100


async def held_soon(ledger: Ledger, user: str, units: int, seconds: float = 5.0) -> Balance:
    """The balance once `units` are held (holds of cancelled callers are released in a task of
    their own, right after their commit)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        balance = await ledger.balance(user)
        if balance.held == units or asyncio.get_running_loop().time() > deadline:
            return balance
        await asyncio.sleep(0.02)


async def test_hundreds_of_callers_cancelled_at_random_moments(ledger: Ledger) -> None:
    """300 people press Stop while their hold is being written: the writer keeps serving, a hold
    whose caller left is released at once (not after its 600 s timeout), the rest stay held."""
    await ledger.grant("stormy", 1_000 * TURN, "welcome:stormy", code="welcome")
    rng = random.Random(10)
    tasks = [
        asyncio.create_task(ledger.reserve("stormy", TURN, f"turn:c-{i}", timeout_s=600))
        for i in range(300)
    ]
    loop = asyncio.get_running_loop()
    for task in tasks:  # each Stop lands at its own moment while the writer works through them
        if rng.random() < 0.7:
            loop.call_later(rng.random() * 0.02, task.cancel)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    kept = [o for o in outcomes if not isinstance(o, BaseException)]
    cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert cancelled > 50, "the test must cancel callers mid-way"
    assert not [o for o in outcomes if isinstance(o, Exception)]

    after = await asyncio.wait_for(
        ledger.reserve("stormy", TURN, "turn:after", timeout_s=600), timeout=10
    )
    assert after.created
    balance = await held_soon(ledger, "stormy", (len(kept) + 1) * TURN)
    assert balance.held == (len(kept) + 1) * TURN
    assert balance.available + balance.held == 1_000 * TURN
    for reserved in kept:  # every acknowledged hold is in the ledger and still open
        found = await ledger.transfer(reserved.transfer.transfer_id)
        assert found is not None and found.kind.value == "pending"
    report = await verify(ledger)
    assert report.ok, report.problems


async def test_cancelled_settles_still_settle(ledger: Ledger) -> None:
    """A settle whose caller is cancelled mid-way still lands: the person pays what they used,
    once, and the hold does not wait for its timeout."""
    await ledger.grant("stopper", 100 * TURN, "welcome:stopper", code="welcome")
    holds = [await ledger.reserve("stopper", TURN, f"turn:s-{i}", timeout_s=600) for i in range(40)]
    rng = random.Random(3)
    tasks = [asyncio.create_task(ledger.settle(h.transfer.transfer_id, TURN // 2)) for h in holds]
    loop = asyncio.get_running_loop()
    for task in tasks:
        loop.call_later(rng.random() * 0.01, task.cancel)
    await asyncio.gather(*tasks, return_exceptions=True)
    balance = await held_soon(ledger, "stopper", 0)
    assert balance == Balance(available=80 * TURN, held=0, posted=80 * TURN)
    assert (await verify(ledger)).ok


async def test_a_failure_after_the_commit_does_not_stop_the_writer(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """The checkpoint file cannot be written (a full disk, a directory in its place): the
    operations that committed are acknowledged and the ledger goes on."""
    ledger.checkpoint_file.mkdir()  # writing it now fails with IsADirectoryError
    await ledger.grant("disk", 50 * TURN, "welcome:disk", code="welcome")
    for i in range(12):  # more than `checkpoint_every` (5): checkpoints are due
        await asyncio.wait_for(
            ledger.reserve("disk", TURN, f"turn:d-{i}", timeout_s=600), timeout=10
        )
    await ledger.sequence()
    assert (await ledger.balance("disk")).held == 12 * TURN
    assert "could not be written outside the database" in caplog.text
    for i in range(12):
        found = await ledger.transfer(f"turn:d-{i}")
        assert found is not None


def die(_db: object) -> None:
    raise SystemExit("simulated death of the writer thread")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_dead_writer_is_reported_then_restarted(ledger: Ledger) -> None:
    """If the SQLite writer thread dies anyway, its waiting caller gets an error (not a hang), the
    health check says so, and the supervisor's round starts a new one on the same queue."""
    if not ledger.sqlite:
        pytest.skip("PostgreSQL has no writer thread: its writes are transactions of their own")
    await ledger.grant("phoenix", 10 * TURN, "welcome:phoenix", code="welcome")
    with pytest.raises(CreditsError, match="writer stopped"):
        await asyncio.wait_for(ledger._write(die), timeout=5)
    assert ledger._writer is not None
    ledger._writer.thread.join(timeout=5)  # it tells its callers, then ends
    assert await ledger.problem() == "the ledger's writer thread is not running"
    await ledger._supervise()
    assert await ledger.problem() is None
    held = await asyncio.wait_for(
        ledger.reserve("phoenix", TURN, "turn:after-death", timeout_s=600), timeout=5
    )
    assert held.created
    assert (await verify(ledger)).ok


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_the_supervisor_restarts_a_dead_writer_by_itself(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger(
        f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}", tmp_path, Ed25519PrivateKey.generate(),
        clock=clock, supervise_every_s=0.05,
    )  # fmt: skip
    await ledger.start(background=True)
    try:
        await ledger.grant("phoenix", 10 * TURN, "welcome:phoenix", code="welcome")
        with pytest.raises(CreditsError, match="writer stopped"):
            await asyncio.wait_for(ledger._write(die), timeout=5)
        held = await asyncio.wait_for(
            ledger.reserve("phoenix", TURN, "turn:after-death", timeout_s=600), timeout=5
        )
        assert held.created
        assert "the writer thread died; starting a new one" in caplog.text
    finally:
        await ledger.close()


@pytest.mark.parametrize("order", ["abandoned-then-told", "told-while-cancelling", "told-first"])
async def test_an_abandoned_outcome_reaches_its_hook_once_whatever_the_order(order: str) -> None:
    """A caller's Stop and its write's outcome may meet in any order on the event loop: the
    outcome is told while the caller's cancellation is still on its way (the waiter cancelled,
    the caller not yet past its `except`), or before it, or after. The hook that releases an
    abandoned hold hears of the result exactly once, in every order."""
    loop = asyncio.get_running_loop()
    waiting = sqlite.Waiting(loop)
    heard: list[str] = []
    done = ("hold-1", None)
    if order == "abandoned-then-told":
        waiting.waiter.cancel()
        waiting.abandon(heard.append)
        waiting.tell(done)
    elif order == "told-while-cancelling":
        waiting.waiter.cancel()
        waiting.tell(done)
        waiting.abandon(heard.append)
    else:
        waiting.tell(done)  # the caller had its result, then was cancelled before using it
        waiting.abandon(heard.append)
    assert heard == ["hold-1"]

"""Long tasks' runs: one row each, claimed by a worker under a lease.

A run is `pending` until a worker claims it (`running`, its `attempt` counted, its lease held for
`lease_s` and renewed by `heartbeat`); it ends `succeeded`, `failed` or `cancelled`, or waits
`paused` (credits ran out, or its budget did: `paused_reason`) until `wake` puts it back to pending.
Every change is one conditional update, so two workers, two tabs or two replicas cannot both move a
run: a worker whose lease was taken over finds its next heartbeat refused and stops.

Claiming takes the oldest pending run, or a running one whose lease expired (its worker died):
on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so replicas claiming at once each get a different
run and none waits; on SQLite, where one process writes, with one statement.

A small table of our own rather than a job-queue library: the only ones that run on both SQLite
and PostgreSQL either lose a job whose worker dies (huey deletes it when taken) or duplicate the
durability LangGraph's checkpoints already give (dbos); the state a person sees (paused for
credits, spent against the budget) has to live in a row we own anyway.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Status = Literal["pending", "running", "paused", "cancelled", "succeeded", "failed"]
ENDED = ("cancelled", "succeeded", "failed")

metadata = MetaData()
task_runs = Table(
    "task_runs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("thread_id", Text),
    Column("goal", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", Text),
    Column("lease_until", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("budget", BigInteger, nullable=False),
    Column("spent", BigInteger, nullable=False),
    Column("paused_reason", Text),
    Column("outcome", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint(
        "status IN ('pending', 'running', 'paused', 'cancelled', 'succeeded', 'failed')",
        name="ck_task_run_status",
    ),
    CheckConstraint("budget > 0 AND spent >= 0", name="ck_task_run_money"),
    CheckConstraint("attempt >= 0", name="ck_task_run_attempt"),
)
Index("ix_task_runs_claim", task_runs.c.status, task_runs.c.created_at)
Index("ix_task_runs_owner", task_runs.c.owner, task_runs.c.created_at)


@dataclass(frozen=True)
class Run:
    id: str
    owner: str
    thread_id: str | None
    goal: str
    status: str
    attempt: int
    worker: str | None
    budget: int
    spent: int
    paused_reason: str | None
    outcome: str | None
    created_at: datetime


def _run(row: Any) -> Run:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return Run(
        row.id, row.owner, row.thread_id, row.goal, row.status, row.attempt, row.worker,
        row.budget, row.spent, row.paused_reason, row.outcome, created,
    )  # fmt: skip


async def start(
    engine: AsyncEngine, owner: str, thread_id: str | None, goal: str, budget: int
) -> Run:
    """A new pending run."""
    now = datetime.now(UTC)
    run_id = f"run-{secrets.token_hex(12)}"
    async with engine.begin() as conn:
        await conn.execute(
            insert(task_runs).values(
                id=run_id, owner=owner, thread_id=thread_id, goal=goal, status="pending",
                attempt=0, budget=budget, spent=0, created_at=now, updated_at=now,
            )
        )  # fmt: skip
        return await _get(conn, run_id)


async def get(engine: AsyncEngine, run_id: str, owner: str | None = None) -> Run | None:
    """The run `run_id` (of `owner`, when given)."""
    async with engine.connect() as conn:
        query = select(task_runs).where(task_runs.c.id == run_id)
        if owner is not None:
            query = query.where(task_runs.c.owner == owner)
        row = (await conn.execute(query)).first()
    return _run(row) if row is not None else None


async def of_owner(engine: AsyncEngine, owner: str, limit: int = 20) -> list[Run]:
    """`owner`'s runs, newest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(task_runs)
            .where(task_runs.c.owner == owner)
            .order_by(task_runs.c.created_at.desc())
            .limit(limit)
        )
        return [_run(r) for r in rows]


async def claim(engine: AsyncEngine, worker: str, lease_s: float) -> Run | None:
    """The next run for `worker` to work on, its lease taken; None when there is none."""
    now = datetime.now(UTC)
    claimable = or_(
        task_runs.c.status == "pending",
        and_(task_runs.c.status == "running", task_runs.c.lease_until < now),
    )
    oldest = select(task_runs.c.id).where(claimable).order_by(task_runs.c.created_at).limit(1)
    if engine.dialect.name == "postgresql":
        oldest = oldest.with_for_update(skip_locked=True)
    async with engine.begin() as conn:
        done = await conn.execute(
            update(task_runs)
            .where(task_runs.c.id == oldest.scalar_subquery(), claimable)
            .values(
                status="running", worker=worker, attempt=task_runs.c.attempt + 1,
                lease_until=now + timedelta(seconds=lease_s), heartbeat_at=now, updated_at=now,
            )
            .returning(task_runs.c.id)
        )  # fmt: skip
        claimed = done.scalar_one_or_none()
        return await _get(conn, claimed) if claimed is not None else None


async def heartbeat(engine: AsyncEngine, run: Run, worker: str, lease_s: float) -> bool:
    """Renew `worker`'s lease on `run`; False when it is no longer theirs to work on (taken
    over, cancelled): the worker stops."""
    now = datetime.now(UTC)
    return await _move(
        engine, run.id, {"status": "running", "worker": worker, "attempt": run.attempt},
        lease_until=now + timedelta(seconds=lease_s), heartbeat_at=now,
    )  # fmt: skip


async def spend(engine: AsyncEngine, run: Run, worker: str, units: int) -> bool:
    """Add `units` to what the run spent (its worker, under its lease)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        done = await conn.execute(
            update(task_runs)
            .where(
                task_runs.c.id == run.id, task_runs.c.worker == worker,
                task_runs.c.attempt == run.attempt, task_runs.c.status == "running",
            )
            .values(spent=task_runs.c.spent + units, updated_at=now)
        )  # fmt: skip
        return bool(done.rowcount == 1)


async def pause(engine: AsyncEngine, run: Run, worker: str, reason: str) -> bool:
    """Its worker pauses the run (credits or budget ran out)."""
    return await _move(
        engine, run.id, {"status": "running", "worker": worker, "attempt": run.attempt},
        status="paused", paused_reason=reason, worker=None, lease_until=None,
    )  # fmt: skip


async def finish(engine: AsyncEngine, run: Run, worker: str, status: Status, outcome: str) -> bool:
    """Its worker ends the run."""
    return await _move(
        engine, run.id, {"status": "running", "worker": worker, "attempt": run.attempt},
        status=status, outcome=outcome, worker=None, lease_until=None,
    )  # fmt: skip


async def cancel(engine: AsyncEngine, run_id: str, owner: str) -> bool:
    """Its owner cancels a run that has not ended."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        done = await conn.execute(
            update(task_runs)
            .where(
                task_runs.c.id == run_id, task_runs.c.owner == owner,
                task_runs.c.status.not_in(ENDED),
            )
            .values(status="cancelled", worker=None, lease_until=None, updated_at=now,
                    outcome="Cancelled by its owner.")
        )  # fmt: skip
        return bool(done.rowcount == 1)


async def wake(engine: AsyncEngine, owner: str, run_id: str | None = None) -> list[str]:
    """Paused runs of `owner` (or just `run_id`) back to pending: credits arrived, or the budget
    was raised. The ids woken."""
    now = datetime.now(UTC)
    where = [task_runs.c.owner == owner, task_runs.c.status == "paused"]
    if run_id is not None:
        where.append(task_runs.c.id == run_id)
    async with engine.begin() as conn:
        done = await conn.execute(
            update(task_runs)
            .where(*where)
            .values(status="pending", paused_reason=None, updated_at=now)
            .returning(task_runs.c.id)
        )
        return [str(r) for r in done.scalars()]


async def raise_budget(engine: AsyncEngine, run_id: str, owner: str, budget: int) -> bool:
    """Its owner raises a run's budget (never below what it spent)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        done = await conn.execute(
            update(task_runs)
            .where(
                task_runs.c.id == run_id, task_runs.c.owner == owner,
                task_runs.c.status.not_in(ENDED), task_runs.c.spent <= budget,
            )
            .values(budget=budget, updated_at=now)
        )  # fmt: skip
        return bool(done.rowcount == 1)


async def _move(engine: AsyncEngine, run_id: str, expect: dict[str, Any], **values: Any) -> bool:
    """Change run `run_id` only while its columns are as `expect` says."""
    async with engine.begin() as conn:
        done = await conn.execute(
            update(task_runs)
            .where(task_runs.c.id == run_id, *(task_runs.c[k] == v for k, v in expect.items()))
            .values(updated_at=datetime.now(UTC), **values)
        )
        return bool(done.rowcount == 1)


async def _get(conn: AsyncConnection, run_id: str) -> Run:
    return _run((await conn.execute(select(task_runs).where(task_runs.c.id == run_id))).one())

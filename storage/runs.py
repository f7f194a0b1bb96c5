"""Long tasks' runs: one row each, claimed by a worker under a lease.

A run is `pending` until a worker claims it (`running`, its `attempt` counted, its lease held for
`lease_s` and renewed by `heartbeat`); it ends `succeeded`, `failed` or `cancelled`, or waits
`paused` (credits ran out, or its budget did: `paused_reason`, and what it `needs`) until `wake`
puts it back to pending. A run whose provider failed for a moment goes back to pending with a
`not_before` (`retry_later`), and one whose worker stops cleanly too (`release`). The row also
keeps what the person sees of the run (`progress`: its plan, steps, tool calls and answer), so
that any replica can show it.
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

import json
import secrets
from dataclasses import dataclass, field
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
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

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
    Column("message_id", Text),  # the chat message that shows the run
    Column("model", Text),  # the model it thinks with (None: the deployment's task model)
    Column("files", Text, nullable=False, server_default="[]"),  # JSON: the names of its files
    Column("progress", Text, nullable=False, server_default="{}"),  # JSON: what the person sees
    Column("needs", BigInteger, nullable=False, server_default="0"),  # paused: units to go on
    Column("not_before", DateTime(timezone=True)),  # pending: not claimed before then
    Column("failures", Integer, nullable=False, server_default="0"),  # in a row, of its provider
    Column("spent_through", Integer, nullable=False, server_default="0"),  # last action in spent
    CheckConstraint("needs >= 0 AND failures >= 0", name="ck_task_run_needs"),
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
    message_id: str | None = None
    model: str | None = None
    files: tuple[str, ...] = ()
    progress: dict[str, Any] = field(default_factory=dict)
    needs: int = 0
    failures: int = 0

    @property
    def ended(self) -> bool:
        return self.status in ENDED


def _run(row: Any) -> Run:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return Run(
        row.id, row.owner, row.thread_id, row.goal, row.status, row.attempt, row.worker,
        row.budget, row.spent, row.paused_reason, row.outcome, created, row.message_id,
        row.model, tuple(json.loads(row.files)), json.loads(row.progress), row.needs, row.failures,
    )  # fmt: skip


def new_id() -> str:
    return f"run-{secrets.token_hex(12)}"


async def start(
    engine: AsyncEngine,
    owner: str,
    thread_id: str | None,
    goal: str,
    budget: int,
    message_id: str | None = None,
    files: tuple[str, ...] = (),
    run_id: str | None = None,
    model: str | None = None,
) -> Run:
    """A new pending run (under `run_id` when its files were stored under it first)."""
    now = datetime.now(UTC)
    run_id = run_id or new_id()
    async with engine.begin() as conn:
        await conn.execute(
            insert(task_runs).values(
                id=run_id, owner=owner, thread_id=thread_id, goal=goal, status="pending",
                attempt=0, budget=budget, spent=0, created_at=now, updated_at=now,
                message_id=message_id, files=json.dumps(list(files)), model=model,
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


async def going(engine: AsyncEngine, owner: str) -> int:
    """How many of `owner`'s runs have not ended."""
    async with engine.connect() as conn:
        found = await conn.execute(
            select(func.count())
            .select_from(task_runs)
            .where(task_runs.c.owner == owner, task_runs.c.status.not_in(ENDED))
        )
        return int(found.scalar_one())


async def claim(engine: AsyncEngine, worker: str, lease_s: float) -> Run | None:
    """The next run for `worker` to work on, its lease taken; None when there is none."""
    now = datetime.now(UTC)
    claimable = or_(
        and_(
            task_runs.c.status == "pending",
            or_(task_runs.c.not_before.is_(None), task_runs.c.not_before <= now),
        ),
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
                not_before=None,
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
        engine, run.id, _held_by(run, worker),
        lease_until=now + timedelta(seconds=lease_s), heartbeat_at=now,
    )  # fmt: skip


async def spend(engine: AsyncEngine, run: Run, worker: str, action: int, units: int) -> bool:
    """Add `units`, what the run's action number `action` was charged, to what it spent (its
    worker, under its lease). Once per action: the ledger settles the charge and this row counts
    it in two transactions, so an attempt that takes over from one killed between them counts it
    again, and only the first count is kept (False: counted already, or not this worker's)."""
    return await _move(
        engine, run.id, _held_by(run, worker), task_runs.c.spent_through < action,
        spent=task_runs.c.spent + units, spent_through=action,
    )  # fmt: skip


async def show(engine: AsyncEngine, run: Run, worker: str, progress: dict[str, Any]) -> bool:
    """Its worker records what the person sees of the run now."""
    return await _move(
        engine, run.id, _held_by(run, worker), progress=json.dumps(progress, ensure_ascii=False)
    )


async def pause(engine: AsyncEngine, run: Run, worker: str, reason: str, needs: int = 0) -> bool:
    """Its worker pauses the run: credits ran out (it `needs` that many units to go on), or its
    budget did."""
    return await _move(
        engine, run.id, _held_by(run, worker),
        status="paused", paused_reason=reason, needs=needs, worker=None, lease_until=None,
        failures=0,
    )  # fmt: skip


async def retry_later(engine: AsyncEngine, run: Run, worker: str, after_s: float) -> bool:
    """Its worker puts the run back, to be claimed again after `after_s` (its provider failed)."""
    return await _move(
        engine, run.id, _held_by(run, worker),
        status="pending", worker=None, lease_until=None, failures=task_runs.c.failures + 1,
        not_before=datetime.now(UTC) + timedelta(seconds=after_s),
    )  # fmt: skip


async def release(engine: AsyncEngine, run: Run, worker: str) -> bool:
    """Its worker stops cleanly (the app is shutting down): the run is pending again at once."""
    return await _move(
        engine, run.id, _held_by(run, worker), status="pending", worker=None, lease_until=None
    )


async def finish(engine: AsyncEngine, run: Run, worker: str, status: Status, outcome: str) -> bool:
    """Its worker ends the run."""
    return await _move(
        engine, run.id, _held_by(run, worker),
        status=status, outcome=outcome, worker=None, lease_until=None, failures=0,
    )  # fmt: skip


async def recover(engine: AsyncEngine) -> int:
    """On SQLite, where one process works on runs: the runs it was working on when it stopped
    (killed: no `release`) are pending again at once, without waiting for their leases."""
    async with engine.begin() as conn:
        done = await conn.execute(
            update(task_runs)
            .where(task_runs.c.status == "running")
            .values(status="pending", worker=None, lease_until=None, updated_at=datetime.now(UTC))
        )
        return int(done.rowcount)


def _held_by(run: Run, worker: str) -> dict[str, Any]:
    return {"status": "running", "worker": worker, "attempt": run.attempt}


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
                    outcome="Cancelled by its owner.", needs=0)
        )  # fmt: skip
        return bool(done.rowcount == 1)


async def wake(
    engine: AsyncEngine, owner: str, run_id: str | None = None, available: int | None = None
) -> list[str]:
    """Paused runs of `owner` (or just `run_id`) back to pending: credits arrived (only the
    runs that `available` units cover, when given), or the budget was raised. The ids woken."""
    now = datetime.now(UTC)
    where = [task_runs.c.owner == owner, task_runs.c.status == "paused"]
    if run_id is not None:
        where.append(task_runs.c.id == run_id)
    if available is not None:
        where.append(task_runs.c.needs <= available)
    async with engine.begin() as conn:
        done = await conn.execute(
            update(task_runs)
            .where(*where)
            .values(status="pending", paused_reason=None, needs=0, updated_at=now)
            .returning(task_runs.c.id)
        )
        return [str(r) for r in done.scalars()]


async def waiting_for_credits(engine: AsyncEngine) -> list[tuple[str, int]]:
    """(owner, units needed) of the runs paused for credits, for a sweep that wakes the ones
    whose owners got credits while no replica heard of it."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(task_runs.c.owner, task_runs.c.needs).where(
                task_runs.c.status == "paused", task_runs.c.needs > 0
            )
        )
        return [(str(r.owner), int(r.needs)) for r in rows]


async def cancel_in_thread(engine: AsyncEngine, thread_id: str) -> list[Run]:
    """The runs of a deleted thread that had not ended, cancelled (all of them: for their
    checkpoints to go too)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(
            update(task_runs)
            .where(task_runs.c.thread_id == thread_id, task_runs.c.status.not_in(ENDED))
            .values(status="cancelled", worker=None, lease_until=None, updated_at=now,
                    outcome="Its chat was deleted.", needs=0)
        )  # fmt: skip
        rows = await conn.execute(select(task_runs).where(task_runs.c.thread_id == thread_id))
        return [_run(r) for r in rows]


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


async def _move(
    engine: AsyncEngine,
    run_id: str,
    expect: dict[str, Any],
    *also: ColumnElement[bool],
    **values: Any,
) -> bool:
    """Change run `run_id` only while its columns are as `expect` (and `also`) say."""
    async with engine.begin() as conn:
        done = await conn.execute(
            update(task_runs)
            .where(
                task_runs.c.id == run_id, *(task_runs.c[k] == v for k, v in expect.items()), *also
            )
            .values(updated_at=datetime.now(UTC), **values)
        )
        return bool(done.rowcount == 1)


async def _get(conn: AsyncConnection, run_id: str) -> Run:
    return _run((await conn.execute(select(task_runs).where(task_runs.c.id == run_id))).one())

"""Two app processes on one PostgreSQL database share the runs: each claims its own (none runs on
both), and the runs of the one killed mid-way are taken over by the other once their leases have
expired, resumed from their last saved step and charged once per call."""

from __future__ import annotations

import asyncio
import base64
import secrets
import signal
import time
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import select

from credits.verify import verify
from settings import Settings
from storage import runs
from storage.engine import create_engine
from storage.ledger import ledger_from_settings
from tests.e2e.conftest import ADMIN
from tests.e2e.process import app_process
from tests.fakes.openai_server import FakeOpenAI, one_step_task

LEASE_S = 3.0
RUNS = 6
ACTIONS = 5  # a plan, a call for the calculator, the calculator, what it found, the answer


async def test_two_replicas_split_the_runs_and_one_takes_over_when_the_other_dies(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    fake = FakeOpenAI(respond=one_step_task, delay_s=0.8).start()
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    common = dict(
        DATABASE_URL=fresh_postgres_url, LEDGER_SIGNING_KEY=key,
        CHAINLIT_AUTH_SECRET=secrets.token_urlsafe(48), ADMIN_EMAIL=ADMIN[0],
        ADMIN_PASSWORD=ADMIN[1], VLLM_BASE_URL=fake.base_url, TASK_MODEL="vllm-llama-3.1-8b",
        TASK_LEASE_S=str(LEASE_S), TASK_WORKER_RUNS="2", MODEL_TIMEOUT_S="10",
        IMAGES_DIR=str(tmp_path / "shared-files"),
    )  # fmt: skip
    engine = create_engine(fresh_postgres_url)
    stack = ExitStack()
    try:
        for replica in ("a", "b"):
            (tmp_path / replica).mkdir()
        _, first = stack.enter_context(app_process(tmp_path / "a", **common))
        _, second = stack.enter_context(app_process(tmp_path / "b", **common))
        ledger = ledger_from_settings(
            Settings(data_dir=tmp_path / "a", database_url=fresh_postgres_url,
                     ledger_signing_key=key)  # type: ignore[call-arg]
        )  # fmt: skip
        await ledger.start(background=False)
        people = [f"p{n}@example.com" for n in range(RUNS)]
        for person in people:
            await ledger.grant(person, 100_000, f"grant:{person}")
        started = [
            await runs.start(engine, person, None, f"Task {n}: six times seven", 20_000)
            for n, person in enumerate(people)
        ]
        seen: dict[str, set[str]] = {r.id: set() for r in started}  # run -> workers seen on it

        async def look() -> list[runs.Run]:
            found = [await runs.get(engine, r.id) for r in started]
            for run in found:
                assert run is not None
                if run.worker:
                    seen[run.id].add(run.worker)
            return [r for r in found if r is not None]

        async with asyncio.timeout(30):  # both replicas at work
            while True:
                working = {r.worker for r in await look() if r.status == "running"}
                if len(working) >= 2:
                    break
                await asyncio.sleep(0.05)
        now = await look()
        pid = str(first.pid)
        mine = [
            r.id for r in now if r.status == "running" and (r.worker or "").split(":")[1] == pid
        ]
        assert mine, now
        killed_at = time.monotonic()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        taken_over: dict[str, float] = {}
        async with asyncio.timeout(60):
            while True:
                found = await look()
                for r in found:
                    if r.id in mine and r.worker and r.worker.split(":")[1] != pid:
                        taken_over.setdefault(r.id, time.monotonic() - killed_at)
                if all(r.status == "succeeded" for r in found):
                    break
                await asyncio.sleep(0.05)
        assert set(taken_over) == set(mine)
        assert max(taken_over.values()) <= LEASE_S + 5
        workers = {w for ws in seen.values() for w in ws}
        assert {w.split(":")[1] for w in workers} == {pid, str(second.pid)}  # split between them
        async with engine.connect() as conn:
            attempts = dict((await conn.execute(
                select(runs.task_runs.c.id, runs.task_runs.c.attempt))).all())  # fmt: skip
        assert all(attempts[r] == 2 for r in mine)
        for run in started:
            charged = [t for t in await ledger.charges(run.owner) if t.meta.get("run") == run.id]
            actions = sorted(int(t.transfer_id.split(":")[2].split(".")[0]) for t in charged)
            assert actions == list(range(1, ACTIONS + 1)), (run.id, actions)
            done = await runs.get(engine, run.id)
            assert done is not None and done.spent == sum(t.amount for t in charged)
            assert (await ledger.balance(run.owner)).held == 0
        report = await verify(ledger)
        assert report.ok, report.problems
        await ledger.close()
    finally:
        stack.close()
        await engine.dispose()
        fake.stop()

"""Long tasks: how soon a paused task goes on after a top-up, how soon a dead replica's runs are
taken over, and many tasks at once on one app process.

The real app processes run with tasks thinking on the loopback provider (tests/fakes/
openai_server.py, `one_step_task`: each task plans one step, calls the calculator, says what it
found and answers; 5 metered actions), answering each call after `--delay-ms`. Runs are started
in the app's database, as `/task`'s Start does (the worker finds them by polling); credits are
granted by an administrator's `/grant` in a chat, as a person would get them.

Prints `name: value` lines:
  resume_after_topup_ms_p50 / _p95  from the administrator's `/grant` sent to the paused run
                                    running again (target p95 <= 2000)
  takeover_lease_s                  the lease the two replicas run with
  takeover_s                        from a replica killed (SIGKILL) to its run running on the
                                    other (target <= lease + 5)
  concurrent_tasks_answered         of `--tasks` runs of as many people on one process (all)
  concurrent_tasks_charged_right    of them, charged their five calls, once each, at their price
  concurrent_tasks_wall_s           from the runs started to the last one done

Usage: .venv/bin/python bench/tasks.py [--trials 10] [--tasks 50] [--delay-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.catalog import load_catalog
from agents.prices import Pricing
from auth import passwords
from credits.store import Ledger
from settings import ROOT, Settings
from storage import runs
from storage.engine import create_engine
from storage.ledger import ledger_from_settings
from storage.migrate import upgrade_async
from tests.conftest import _fresh_postgres, postgres_available
from tests.e2e.client import ChatSession, login
from tests.e2e.process import app_process
from tests.fakes.openai_server import FakeOpenAI, one_step_task

PASSWORD = "bench-password-long-enough"
ADMIN = "admin@example.com"
MODEL = "vllm-llama-3.1-8b"
ACTIONS = 5


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def app_settings(fake: FakeOpenAI, **more: str) -> dict[str, str]:
    return dict(
        ADMIN_EMAIL=ADMIN, ADMIN_PASSWORD=PASSWORD, LOG_LEVEL="WARNING",
        VLLM_BASE_URL=fake.base_url, TASK_MODEL=MODEL, MODEL_TIMEOUT_S="30",
        LOGIN_ATTEMPTS_PER_ADDRESS="100000/minute", LOGIN_ATTEMPTS_PER_ACCOUNT="100000/minute",
        **more,
    )  # fmt: skip


async def until(engine: AsyncEngine, run_id: str, *wanted: str, timeout: float = 60) -> float:
    """Poll the run until its status is one of `wanted`; when that was seen (perf_counter)."""
    async with asyncio.timeout(timeout):
        while True:
            run = await runs.get(engine, run_id)
            if run is not None and run.status in wanted:
                return time.perf_counter()
            await asyncio.sleep(0.005)


async def resume_after_topup(base_url: str, engine: AsyncEngine, trials: int) -> None:
    admin = ChatSession(base_url, await login(base_url, ADMIN, PASSWORD))
    await admin.connect()
    took = []
    for n in range(trials + 2):  # two to warm up
        person = f"payer{n}@example.com"
        await passwords.create(engine, person, PASSWORD)
        run = await runs.start(engine, person, None, f"Bench task {n}: six times seven", 20_000)
        await until(engine, run.id, "paused")
        began = time.perf_counter()
        await admin.emit_message(f"/grant {person} 50 bench top-up")
        running = await until(engine, run.id, "running", "succeeded")
        if n >= 2:
            took.append((running - began) * 1000)
        await until(engine, run.id, "succeeded")
    await admin.close()
    print(f"resume_after_topup_ms_p50: {statistics.median(took):.1f}")
    print(f"resume_after_topup_ms_p95: {percentile(took, 95):.1f}")


async def concurrent(data_dir: Path, engine: AsyncEngine, count: int, pricing: Pricing) -> None:
    ledger = ledger_from_settings(Settings(data_dir=data_dir))
    await ledger.start(background=False)
    try:
        people = [f"worker{n}@example.com" for n in range(count)]
        for person in people:
            await ledger.grant(person, 100_000, f"grant:{person}")
        began = time.perf_counter()
        started = await asyncio.gather(*(
            runs.start(engine, p, None, f"Task of {p}: six times seven", 20_000) for p in people
        ))  # fmt: skip
        await asyncio.gather(*(until(engine, r.id, "succeeded", "failed", timeout=300)
                               for r in started))  # fmt: skip
        wall = time.perf_counter() - began
        answered = right = 0
        for run in started:
            done = await runs.get(engine, run.id)
            assert done is not None
            answered += done.status == "succeeded" and bool(done.progress.get("answer"))
            right += await charged_right(ledger, done, pricing)
    finally:
        await ledger.close()
    print(f"concurrent_tasks_answered: {answered}/{count}")
    print(f"concurrent_tasks_charged_right: {right}/{count}")
    print(f"concurrent_tasks_wall_s: {wall:.2f}")


async def charged_right(ledger: Ledger, run: runs.Run, pricing: Pricing) -> bool:
    catalog = load_catalog(ROOT / "models.toml", {"VLLM_BASE_URL": "x"}.get, MODEL)
    charged = [t for t in await ledger.charges(run.owner) if t.meta.get("run") == run.id]
    actions = sorted(int(t.transfer_id.split(":")[2].split(".")[0]) for t in charged)
    priced = all(
        t.amount == (
            pricing.tokens(catalog.get(MODEL), t.meta["tokens_in"], t.meta["tokens_out"])
            if t.meta["model"] == MODEL else pricing.work(catalog.work[t.meta["model"]], calls=1)
        )
        for t in charged
    )  # fmt: skip
    balance = await ledger.balance(run.owner)
    spent = sum(t.amount for t in charged)
    return (
        actions == list(range(1, ACTIONS + 1)) and priced and run.spent == spent
        and balance.available == 100_000 - spent and balance.held == 0
    )  # fmt: skip


async def takeover(fake: FakeOpenAI, lease_s: float) -> None:
    """Two replicas on PostgreSQL; the one that holds the run is killed."""
    if reason := postgres_available():
        print(f"takeover_s: not measured: {reason}")
        return
    fresh = _fresh_postgres()
    url = next(fresh)
    tmp = Path(tempfile.mkdtemp(prefix="bench-takeover-"))
    common = app_settings(
        fake, DATABASE_URL=url, LEDGER_SIGNING_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        CHAINLIT_AUTH_SECRET=secrets.token_urlsafe(48), TASK_LEASE_S=str(lease_s),
    )  # fmt: skip
    engine = create_engine(url)
    try:
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        with app_process(tmp / "a", **common) as (_, first), app_process(tmp / "b", **common) as (
            _, second,
        ):  # fmt: skip
            key = common["LEDGER_SIGNING_KEY"]
            replica = Settings(data_dir=tmp / "a", database_url=url, ledger_signing_key=key)  # type: ignore[call-arg,arg-type]
            ledger = ledger_from_settings(replica)
            await ledger.start(background=False)
            await ledger.grant("slow@example.com", 100_000, "grant:slow")
            await ledger.close()
            with fake.behaving(delay_s=2.0):
                run = await runs.start(engine, "slow@example.com", None, "A slow task", 20_000)
                await until(engine, run.id, "running")
                held = await runs.get(engine, run.id)
                assert held is not None and held.worker is not None
                victim = first if held.worker.split(":")[1] == str(first.pid) else second
                killed = time.perf_counter()
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)
                async with asyncio.timeout(lease_s + 60):
                    while True:
                        now = await runs.get(engine, run.id)
                        if now is not None and now.worker and now.worker != held.worker:
                            break
                        await asyncio.sleep(0.01)
                took = time.perf_counter() - killed
                await until(engine, run.id, "succeeded", timeout=60)
        print(f"takeover_lease_s: {lease_s:g}")
        print(f"takeover_s: {took:.2f}")
    finally:
        await engine.dispose()
        next(fresh, None)


async def run(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(respond=one_step_task, delay_s=args.delay_ms / 1000).start()
    pricing = Pricing(Settings().credit_usd, Settings().price_markup)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    db = f"sqlite+aiosqlite:///{(data_dir / 'app.db').resolve()}"
    await upgrade_async(db)
    engine = create_engine(db)
    try:
        overrides = app_settings(fake, WELCOME_BONUS_CREDITS="0", TASK_WORKER_RUNS=str(args.tasks))
        with app_process(data_dir, **overrides) as (base_url, _):
            await resume_after_topup(base_url, engine, args.trials)
            await concurrent(data_dir, engine, args.tasks, pricing)
        await takeover(fake, args.lease_s)
    finally:
        await engine.dispose()
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--delay-ms", type=int, default=100)
    parser.add_argument("--lease-s", type=float, default=10.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""A writer killed with SIGKILL at random moments, 50 times: the ledger opens, verifies, and keeps
every operation it acknowledged (SQLite with synchronous=FULL, and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

from credits.log import load_or_create_key
from credits.ops import Db
from credits.store import Ledger
from credits.verify import verify
from settings import ROOT

KILLS = 50
WRITER = """
import asyncio, sys, random
from pathlib import Path
from credits.log import load_or_create_key
from credits.ops import Db
from credits.store import Ledger

async def main(url, data_dir, run):
    key = load_or_create_key(Path(data_dir) / "ledger-signing.key")
    book = Ledger(url, Path(data_dir), key, checkpoint_every=7)
    await book.start(background=False)
    print("ready", flush=True)
    async def worker(w):
        user = f"u{w}"
        await book.grant(user, 10**9, f"welcome:{run}-{w}", code="welcome")
        print(f"ack welcome:{run}-{w}", flush=True)
        for i in range(10**6):
            tid = f"turn:{run}-{w}-{i}"
            await book.reserve(user, 1000, tid, timeout_s=600)
            print(f"ack {tid}", flush=True)
            if i % 3:
                await book.settle(tid, random.randint(0, 1000))
                print(f"ack {tid}/post", flush=True)
    await asyncio.gather(*(worker(w) for w in range(6)))

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


async def run_and_kill(url: str, data_dir: Path, run: int, rng: random.Random) -> set[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, url, str(data_dir), str(run),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    acked: set[str] = set()
    ready = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    assert ready.strip() == b"ready"

    async def read() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            if line.startswith(b"ack "):
                acked.add(line[4:].strip().decode())

    reader = asyncio.create_task(read())
    await asyncio.sleep(rng.uniform(0.02, 0.4))
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    await reader  # every acknowledgement written before the kill
    return acked


async def test_killed_writers_lose_nothing_they_acknowledged(
    database_url: str, tmp_path: Path
) -> None:
    url = database_url
    if url.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    rng = random.Random(20261121)
    key = load_or_create_key(tmp_path / "ledger-signing.key")
    acknowledged: set[str] = set()
    for run in range(KILLS):
        acknowledged |= await run_and_kill(url, tmp_path, run, rng)
        book = Ledger(url, tmp_path, key)
        await book.start(background=False)
        try:
            report = await verify(book)
            assert report.ok, f"after kill {run + 1}: {report.problems}"
            present = await book._read(_all_ids)
        finally:
            await book.close()
        missing = acknowledged - present
        assert not missing, f"after kill {run + 1}, acknowledged but missing: {sorted(missing)[:5]}"
    assert len(acknowledged) > KILLS * 5  # the writers did real work between kills


def _all_ids(db: Db) -> set[str]:
    return {r[0] for r in db.all("SELECT transfer_id FROM ledger_transfers")}

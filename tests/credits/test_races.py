"""A user with credits for exactly 20 turns starts 200 at once: 20 succeed, never more.

On SQLite and PostgreSQL, from one process and from two processes sharing the database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from credits import verify as verifying
from credits.errors import InsufficientCredits
from credits.ledger import Balance
from credits.store import Ledger
from credits.verify import verify
from settings import ROOT

TURN = 700  # units one turn holds
WORKER = """
import asyncio, json, sys
from pathlib import Path
from credits.errors import InsufficientCredits
from credits.log import load_or_create_key
from credits.store import Ledger

async def main(url, data_dir, name, count, seed):
    # Every process of one ledger signs with the same key (LEDGER_SIGNING_KEY on each replica).
    book = Ledger(url, Path(data_dir), load_or_create_key(Path(data_dir), seed))
    await book.start(background=False)
    async def one(i):
        try:
            await book.reserve("racer", 700, f"turn:{name}-{i}", timeout_s=600)
            return 1
        except InsufficientCredits:
            return 0
    ok = sum(await asyncio.gather(*(one(i) for i in range(count))))
    await book.close()
    print(json.dumps({"ok": ok}))

asyncio.run(main(*sys.argv[1:4], int(sys.argv[4]), sys.argv[5]))
"""


def seed_of(ledger: Ledger) -> str:
    raw = ledger.signer.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode()


async def reserve_all(ledger: Ledger, prefix: str, count: int) -> int:
    async def one(i: int) -> int:
        try:
            await ledger.reserve("racer", TURN, f"turn:{prefix}-{i}", timeout_s=600)
        except InsufficientCredits:
            return 0
        return 1

    return sum(await asyncio.gather(*(one(i) for i in range(count))))


async def test_200_concurrent_reserves_on_a_balance_for_20(ledger: Ledger) -> None:
    await ledger.grant("racer", 20 * TURN, "welcome:racer", code="welcome")
    assert await reserve_all(ledger, "a", 200) == 20
    assert await ledger.balance("racer") == Balance(available=0, held=20 * TURN, posted=20 * TURN)
    # The 180 refused reserves were undone within their group commits, log entries and all.
    assert (await ledger.checkpoint()).size == 21
    report = await verify(ledger)
    assert report.ok, report.problems


async def test_two_processes_race_for_the_same_balance(ledger: Ledger, tmp_path: Path) -> None:
    await ledger.grant("racer", 20 * TURN, "welcome:racer", code="welcome")
    url = ledger.url
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            url,
            str(tmp_path),
            name,
            "100",
            seed_of(ledger),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("p1", "p2")
    ]
    outputs = [await p.communicate() for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
    won = [json.loads(out.decode().strip().splitlines()[-1])["ok"] for out, _ in outputs]
    assert sum(won) == 20
    assert await ledger.balance("racer") == Balance(available=0, held=20 * TURN, posted=20 * TURN)
    report = await verify(ledger)
    assert report.ok, report.problems


async def test_the_same_reserve_sent_50_times_at_once_holds_once(ledger: Ledger) -> None:
    await ledger.grant("racer", 20 * TURN, "welcome:racer", code="welcome")
    results = await asyncio.gather(
        *(ledger.reserve("racer", TURN, "turn:dup", timeout_s=600) for _ in range(50))
    )
    assert len({r.transfer.transfer_id for r in results}) == 1
    assert sum(r.created for r in results) == 1  # one call created it; the others were told so
    assert (await ledger.balance("racer")).held == TURN
    settles = await asyncio.gather(
        *(ledger.settle("turn:dup", 100) for _ in range(20)), return_exceptions=True
    )
    assert all(not isinstance(s, BaseException) for s in settles), settles
    assert await ledger.balance("racer") == Balance(19 * TURN + 600, 0, 19 * TURN + 600)
    assert (await verify(ledger)).ok


async def test_verify_while_turns_are_written_sees_one_moment(ledger: Ledger) -> None:
    """Counters, log and checkpoints are read in one snapshot: writes in between never show as
    tampering, on either database."""
    await ledger.grant("racer", 10**9, "welcome:racer", code="welcome")
    stop = asyncio.Event()

    async def turns(client: int) -> None:
        i = 0
        while not stop.is_set():
            hold = f"turn:live-{client}-{i}"
            await ledger.reserve("racer", TURN, hold, timeout_s=600)
            await ledger.settle(hold, TURN // 2)
            i += 1

    writers = [asyncio.create_task(turns(c)) for c in range(8)]
    reports = []
    for _ in range(5):
        await asyncio.sleep(0.05)
        reports.append(await verify(ledger))
    stop.set()
    await asyncio.gather(*writers)
    assert all(r.ok for r in reports), [r.problems for r in reports]
    assert reports[-1].entries > reports[0].entries > 1


async def test_verify_counts_transfers_still_waiting_for_the_log(ledger: Ledger) -> None:
    """On PostgreSQL the log is appended after the commit: a user's row already shows a hold the
    log does not have yet. (On SQLite nothing ever waits; the check holds trivially.)"""
    await ledger.grant("racer", 20 * TURN, "welcome:racer", code="welcome")
    await ledger.sequence()
    await ledger.reserve("racer", TURN, "turn:waiting", timeout_s=600)
    await ledger.settle("turn:waiting", 10)
    await ledger.reserve("racer", TURN, "turn:open", timeout_s=600)
    outside = verifying._outside_copy(ledger.checkpoint_file)
    trust = verifying.Trust(ledger.pinned_key, ledger.ledger_id, ledger.sqlite)
    report = await ledger._read(lambda db: verifying._verify(db, trust, outside), snapshot=True)
    assert report.ok, report.problems
    assert report.entries == (1 if not ledger.sqlite else 4)

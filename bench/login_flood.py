"""A login flood against the running app: does a person's chat slow down?

One person chats (answers from a fast loopback provider in its own process) while hundreds of
wrong passwords arrive from one address. Prints `name: value` lines:
  turn_ms_p50_quiet                a turn's time with no flood
  turn_ms_p50_flood                the same, during the flood (default throttle)
  login_flood_turn_ratio           flood / quiet                                    target <= 1.5
  login_flood_refused              wrong passwords checked and refused (401)
  login_flood_throttled            attempts answered 429 without any check
  turn_ms_p50_flood_unthrottled    during a flood with the throttle lifted (every attempt pays
                                   Argon2, in its own two threads): for comparison
  login_flood_unthrottled_ratio

Usage: .venv/bin/python bench/login_flood.py [--attempts 300] [--turns 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.turns import fake_provider
from tests.e2e.client import ChatSession, login
from tests.e2e.process import running_app

PERSON = ("reader@example.com", "the-readers-password")
REMOTE = "vllm-llama-3.1-8b"


async def turn_times(chat: ChatSession, turns: int) -> list[float]:
    times = []
    for i in range(turns):
        started = time.perf_counter()
        await chat.turn(f"Question {i}?")
        times.append((time.perf_counter() - started) * 1000)
    return times


FLOOD = """
import asyncio, collections, json, sys
import httpx

async def main(base_url, attempts, at_once):
    statuses = collections.Counter()
    gate = asyncio.Semaphore(at_once)
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        async def attempt(i):
            async with gate:
                form = {"username": f"guess{i % 50}@example.com", "password": f"wrong-{i}"}
                statuses[(await http.post("/login", data=form)).status_code] += 1
        await asyncio.gather(*(attempt(i) for i in range(attempts)))
    print(json.dumps(statuses))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def flood(base_url: str, attempts: int, at_once: int = 20) -> Counter[int]:
    """`attempts` wrong passwords from this one address, `at_once` in flight, sent by a process of
    their own (in this one, the flood's own client work would slow the turns being measured)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOD, base_url, str(attempts), str(at_once),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return Counter({int(k): v for k, v in json.loads(out.decode().strip()).items()})


async def measure(base_url: str, attempts: int, turns: int) -> tuple[list[float], Counter[int]]:
    """Turn times while a flood runs (the flood starts first and outlasts the turns or not)."""
    chat = ChatSession(base_url, await login(base_url, *PERSON))
    await chat.connect()
    await chat.change_settings({"model": REMOTE})
    await turn_times(chat, 3)  # warm
    flooding = asyncio.create_task(flood(base_url, attempts))
    await asyncio.sleep(0.3)  # the flood's process is up and sending
    times = await turn_times(chat, turns)
    statuses = await flooding
    await chat.close()
    return times, statuses


async def quiet(base_url: str, turns: int) -> list[float]:
    chat = ChatSession(base_url, await login(base_url, *PERSON))
    await chat.connect()
    await chat.change_settings({"model": REMOTE})
    await turn_times(chat, 3)
    times = await turn_times(chat, turns)
    await chat.close()
    return times


def run_app(provider: str, **overrides: str):  # type: ignore[no-untyped-def]
    data_dir = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    return running_app(
        data_dir, ADMIN_EMAIL=PERSON[0], ADMIN_PASSWORD=PERSON[1], VLLM_BASE_URL=provider,
        LOG_LEVEL="WARNING", **overrides,
    )  # fmt: skip


def main(attempts: int, turns: int) -> None:
    with fake_provider() as provider:
        with run_app(provider) as base_url:
            calm = asyncio.run(quiet(base_url, turns))
            during, statuses = asyncio.run(measure(base_url, attempts, turns))
        lifted = dict(LOGIN_ATTEMPTS_PER_ADDRESS="100000/minute")
        lifted["LOGIN_ATTEMPTS_PER_ACCOUNT"] = "100000/minute"
        with run_app(provider, **lifted) as base_url:
            unthrottled, _ = asyncio.run(measure(base_url, attempts, turns))
    quiet_p50 = statistics.median(calm)
    print(f"turn_ms_p50_quiet: {quiet_p50:.1f}")
    print(f"turn_ms_p50_flood: {statistics.median(during):.1f}")
    print(f"login_flood_turn_ratio: {statistics.median(during) / quiet_p50:.2f}")
    print(f"login_flood_refused: {statuses[401]}")
    print(f"login_flood_throttled: {statuses[429]}")
    print(f"turn_ms_p50_flood_unthrottled: {statistics.median(unthrottled):.1f}")
    print(f"login_flood_unthrottled_ratio: {statistics.median(unthrottled) / quiet_p50:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=300)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    main(args.attempts, args.turns)

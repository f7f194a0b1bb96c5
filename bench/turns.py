"""What the app adds to a chat turn: metering, and everything else, against a bare Chainlit relay.

Three app processes, each answering from the same fast OpenAI-compatible server on loopback (its
own process, a 50-word reply, no delay, so the model is never the bottleneck):
  on    the real app, metering on (hold before the model, settle after, badge update)
  off   the real app with METERING=false: same persistence, memory and streaming, no ledger
  bare  bench/bare_app.py: Chainlit relaying the server, nothing else

Driven over socket.io as the browser does (tests/e2e/client.py), timing each turn from sending the
message to Chainlit's task_end.

Prints `name: value` lines:
  metering_overhead_ms_p50   median over interleaved single-session pairs of (on - off) (<= 10)
  turn_p95_ms_c1             on, one session at a time, for scale
  turn_p95_ms_c200           on, 200 sessions sending at once (median of the rounds' p95)
  turn_off_p95_ms_c200       off, the same load
  bare_turn_p95_ms_c200      bare, the same load
  overhead_ratio_c200        turn_p95_ms_c200 / bare_turn_p95_ms_c200 (<= 1.25)
  sessions_ok_c200           sessions answered in full, of 200, in the worst round (all)
  app_cpu_ms_per_turn_{on,off,bare}  the app process's CPU time per turn under that load, which
                             says where a gap comes from (the app serves every session on one
                             event loop, so at c200 its p95 follows its CPU per turn)

Usage: .venv/bin/python bench/turns.py [--sessions 200] [--rounds 2] [--pairs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from auth import passwords
from settings import ROOT
from storage.engine import create_engine
from storage.migrate import upgrade_async
from tests.e2e.client import ChatSession, login, streamed_text
from tests.e2e.process import app_process, free_port

WORDS = 50
REPLY = " ".join(f"word{n}" for n in range(WORDS))
PASSWORD = "bench-password-123"
MODEL = "vllm-llama-3.1-8b"  # the catalogue's entry for an OpenAI-compatible server we name


@contextmanager
def fake_provider() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", str(port),
         "--words", str(WORDS)],
        cwd=ROOT,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def add_people(data_dir: Path, count: int) -> list[str]:
    """`count` password logins, written before the app starts (the CLI would take minutes)."""
    url = f"sqlite+aiosqlite:///{(data_dir / 'app.db').resolve()}"
    await upgrade_async(url)
    engine = create_engine(url)
    people = [f"bench{n}@example.com" for n in range(count)]
    for person in people:
        await passwords.create(engine, person, PASSWORD)
    await engine.dispose()
    return people


@contextmanager
def our_app(provider: str, people: int, metering: bool) -> Iterator[Target]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-turns-{'on' if metering else 'off'}-"))
    logins = asyncio.run(add_people(data_dir, people))
    overrides = dict(
        VLLM_BASE_URL=provider, DEFAULT_MODEL=MODEL, METERING=str(metering).lower(),
        ADMIN_EMAIL="admin@example.com", ADMIN_PASSWORD=PASSWORD, LOG_LEVEL="WARNING",
        # 200 people sign in from this one address: not a flood.
        LOGIN_ATTEMPTS_PER_ADDRESS="100000/minute",
        MODEL_TIMEOUT_S="120",
    )  # fmt: skip
    try:
        with app_process(data_dir, **overrides) as (base_url, proc):
            yield Target(base_url, proc.pid, logins)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def bare_app(provider: str) -> Iterator[Target]:
    folder = Path(tempfile.mkdtemp(prefix="bench-turns-bare-"))
    script = folder / "bare_app.py"
    shutil.copy(ROOT / "bench" / "bare_app.py", script)
    try:
        with app_process(folder, script, "/", BARE_BASE_URL=provider) as (base_url, proc):
            yield Target(base_url, proc.pid)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Target:
    """One app under load, with the cookies of its people (none for the bare app)."""

    def __init__(self, base_url: str, pid: int, logins: list[str] | None = None) -> None:
        self.base_url = base_url
        self.pid = pid
        self.logins = logins
        self.cookies: list[httpx.Cookies] = []

    async def sign_in(self, count: int) -> None:
        if self.logins is None:
            self.cookies = [httpx.Cookies() for _ in range(count)]
            return
        self.cookies = [
            await login(self.base_url, person, PASSWORD) for person in self.logins[:count]
        ]

    def cpu_s(self) -> float:
        """CPU time the app process has used so far (user + system)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def open(self, count: int) -> list[ChatSession]:
        chats = [ChatSession(self.base_url, self.cookies[n]) for n in range(count)]
        await asyncio.gather(*(chat.connect() for chat in chats))
        return chats


async def timed_turn(chat: ChatSession, text: str) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        events = await chat.send(text, timeout=300)
    except TimeoutError:
        return float("inf"), False
    took = (time.perf_counter() - started) * 1000
    return took, streamed_text(events).strip() == REPLY


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


async def overhead_pairs(on: Target, off: Target, pairs: int) -> tuple[float, float]:
    """Single-session turns, on and off interleaved so that drift hits both alike."""
    [chat_on], [chat_off] = await on.open(1), await off.open(1)
    await timed_turn(chat_on, "warm up")
    await timed_turn(chat_off, "warm up")
    differences, on_times = [], []
    for n in range(pairs):
        took_on, _ = await timed_turn(chat_on, f"Question {n}?")
        took_off, _ = await timed_turn(chat_off, f"Question {n}?")
        differences.append(took_on - took_off)
        on_times.append(took_on)
    await chat_on.close()
    await chat_off.close()
    return statistics.median(differences), p95(on_times)


async def load(target: Target, sessions: int) -> tuple[float, int, float]:
    """All `sessions` send at once, in new chats: (p95 ms, sessions answered in full, the app's
    CPU ms per turn)."""
    chats = await target.open(sessions)
    cpu_before = target.cpu_s()
    results = await asyncio.gather(*(timed_turn(chat, "Hello there?") for chat in chats))
    cpu_ms = (target.cpu_s() - cpu_before) * 1000 / sessions
    await asyncio.gather(*(chat.close() for chat in chats), return_exceptions=True)
    return p95([took for took, _ in results]), sum(ok for _, ok in results), cpu_ms


async def measure(on: Target, off: Target, bare: Target, args: argparse.Namespace) -> None:
    for target in (on, off, bare):
        await target.sign_in(args.sessions)
    overhead, c1 = await overhead_pairs(on, off, args.pairs)
    print(f"metering_overhead_ms_p50: {overhead:.2f}")
    print(f"turn_p95_ms_c1: {c1:.1f}")
    p95s: dict[str, list[float]] = {"on": [], "off": [], "bare": []}
    cpus: dict[str, list[float]] = {"on": [], "off": [], "bare": []}
    worst_ok = args.sessions
    for _ in range(args.rounds):  # alternate, so that drift hits every target alike
        for name, target in (("bare", bare), ("on", on), ("off", off)):
            took, ok, cpu_ms = await load(target, args.sessions)
            p95s[name].append(took)
            cpus[name].append(cpu_ms)
            if name == "on":
                worst_ok = min(worst_ok, ok)
            print(
                f"# round: {name} p95 {took:.0f} ms, {ok}/{args.sessions} answered, "
                f"app CPU {cpu_ms:.1f} ms/turn",
                flush=True,
            )
    ours, theirs = statistics.median(p95s["on"]), statistics.median(p95s["bare"])
    print(f"turn_p95_ms_c{args.sessions}: {ours:.0f}")
    print(f"turn_off_p95_ms_c{args.sessions}: {statistics.median(p95s['off']):.0f}")
    print(f"bare_turn_p95_ms_c{args.sessions}: {theirs:.0f}")
    print(f"overhead_ratio_c{args.sessions}: {ours / theirs:.3f}")
    print(f"sessions_ok_c{args.sessions}: {worst_ok}")
    for name, values in cpus.items():
        print(f"app_cpu_ms_per_turn_{name}: {statistics.median(values):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=30)
    args = parser.parse_args()
    with ExitStack() as stack:
        provider = stack.enter_context(fake_provider())
        on = stack.enter_context(our_app(provider, args.sessions, metering=True))
        off = stack.enter_context(our_app(provider, args.sessions, metering=False))
        bare = stack.enter_context(bare_app(provider))
        asyncio.run(measure(on, off, bare, args))


if __name__ == "__main__":
    main()

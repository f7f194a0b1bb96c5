"""Payments, end to end: from a provider's webhook to the badge of an open chat, and webhooks
under load.

The real app process sells credits through a loopback Stripe (tests/fakes/stripe_server.py, in
this process: its API answers the app's calls for the checkout's real state). Checkouts are
opened here on the app's own database (as the chat's pack button does), paid at the fake, and
the signed `checkout.session.completed` is posted to the app's webhook.

Prints `name: value` lines:
  topup_to_badge_ms_p50 / _p95   webhook sent to the badge of the person's open chat showing the
                                 new balance, 50 purchases one after another (p95 <= 1000)
  webhook_p50_ms / webhook_p99_ms  each delivery's HTTP time, 50 deliveries at once, over
                                 `--rounds` rounds (p99 <= 100)
  webhook_ok                     deliveries answered 200, of all sent (all)
  app_cpu_ms_per_webhook         the app process's CPU time per delivery, applying included

Usage: .venv/bin/python bench/payments.py [--purchases 50] [--concurrent 50] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from auth import passwords
from credits.ledger import UNITS_PER_CREDIT
from payments import purchases
from payments.packs import Pack
from payments.provider import ReturnUrls
from payments.stripe import StripeCheckout
from storage.engine import create_engine
from storage.migrate import upgrade_async
from tests.e2e.client import ChatSession, login
from tests.e2e.process import app_process
from tests.fakes.stripe_server import FakeStripe

PASSWORD = "bench-password-long-enough"
SECRET = "whsec_bench"
PACK = Pack("starter", "Starter", "usd", 500, 500)
URLS = ReturnUrls("http://bench/payments/stripe/return?order={order}", "http://bench/")


def cpu_s(pid: int) -> float:
    """CPU seconds the process has used (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    fake = FakeStripe(SECRET).start()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-payments-"))
    db = f"sqlite+aiosqlite:///{(data_dir / 'app.db').resolve()}"
    await upgrade_async(db)
    engine = create_engine(db)
    await passwords.create(engine, "buyer@example.com", PASSWORD)
    overrides = dict(
        STRIPE_SECRET_KEY=fake.api_key, STRIPE_WEBHOOK_SECRET=SECRET, STRIPE_API_BASE=fake.url,
        RECONCILE_EVERY_S="0", ADMIN_EMAIL="admin@example.com", ADMIN_PASSWORD=PASSWORD,
        LOG_LEVEL="WARNING",
    )  # fmt: skip
    stripe = StripeCheckout(fake.api_key, SECRET, api_base=fake.url)
    try:
        with app_process(data_dir, **overrides) as (base_url, proc):
            fake.webhook_url = f"{base_url}/api/payments/stripe/webhook"
            chat = ChatSession(base_url, await login(base_url, "buyer@example.com", PASSWORD))
            await chat.connect()
            await chat.wait_for_badge(0)
            if args.purchases:
                await topup_to_badge(chat, engine, stripe, fake, args.purchases)
            await chat.close()
            cpu = cpu_s(proc.pid)
            count = await webhooks(engine, stripe, fake, args.concurrent, args.rounds)
            print(f"app_cpu_ms_per_webhook: {(cpu_s(proc.pid) - cpu) * 1000 / count:.2f}")
    finally:
        await engine.dispose()
        fake.stop()


async def topup_to_badge(
    chat: ChatSession, engine: object, stripe: StripeCheckout, fake: FakeStripe, count: int
) -> None:
    balance = 1000 * UNITS_PER_CREDIT  # the welcome bonus
    took = []
    for _ in range(count):
        _, checkout = await purchases.start(engine, stripe, PACK, "buyer@example.com", URLS)  # type: ignore[arg-type]
        event = fake.pay(checkout.ref, send=False)
        balance += PACK.units
        after = len(chat.events)
        started = time.perf_counter()
        status = await asyncio.to_thread(fake.deliver, event)
        assert status == 200, status
        await chat.wait_until(
            lambda events, units=balance: any(
                n == "element" and d.get("name") == "CreditBadge" and d["props"]["units"] == units
                for n, d in events
            ),
            after,
            timeout=30,
        )
        took.append((time.perf_counter() - started) * 1000)
    print(f"topup_to_badge_ms_p50: {statistics.median(took):.1f}")
    print(f"topup_to_badge_ms_p95: {percentile(took, 95):.1f}")


async def webhooks(
    engine: object, stripe: StripeCheckout, fake: FakeStripe, concurrent: int, rounds: int
) -> int:
    """Each round: `concurrent` kept-alive connections, each sending one signed delivery at the
    same moment; every delivery timed from its request written to its response read. The client
    is plain sockets, so that what is timed is the app, not an HTTP library."""
    assert fake.webhook_url
    url = httpx.URL(fake.webhook_url)
    took: list[float] = []
    ok = sent = 0
    for _ in range(rounds):
        requests = []
        for _ in range(concurrent):
            _, checkout = await purchases.start(engine, stripe, PACK, "buyer@example.com", URLS)  # type: ignore[arg-type]
            body, headers = fake.signed(fake.pay(checkout.ref, send=False))
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            requests.append(
                f"POST {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}\r\n{head}"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        connections = [await asyncio.open_connection(url.host, url.port) for _ in range(concurrent)]

        async def deliver(
            request: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> int:
            started = time.perf_counter()
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            took.append((time.perf_counter() - started) * 1000)
            writer.close()
            return status

        statuses = await asyncio.gather(
            *(deliver(r, *c) for r, c in zip(requests, connections, strict=True))
        )
        ok += statuses.count(200)
        sent += len(statuses)
        await asyncio.sleep(1)  # the app applies what it received
    print(f"webhook_p50_ms: {statistics.median(took):.1f}")
    print(f"webhook_p99_ms: {percentile(took, 99):.1f}")
    print(f"webhook_ok: {ok}/{sent}")
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--purchases", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

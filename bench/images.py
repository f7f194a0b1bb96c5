"""Images and vision: what the app adds around a provider's image, and preparing a photo.

The real app process runs with the image models of tests/fakes/studio.toml, served by the
loopback studio (tests/fakes/image_server.py, in a process of its own: neither it nor this client
shares a process with the other) with grainy 1024x1024 PNGs as heavy as generated ones. Each
request is `/image ...` from an open chat, below the person's "ask me above" price, so it runs at
once.

Prints `name: value` lines:
  image_overhead_ms_p50 / _p95   our time around one 1024x1024 image: from the message sent to
                                 the badge showing its charge, minus the provider's own time
                                 (quote, hold, decode and check, thumbnail, store, settle, UI
                                 events; target p50 <= 50)
  provider_ms_p50                the fake provider's time per image (excluded above)
  vision_prep_ms_p50             verify, normalise and encode a 12-megapixel JPEG photo, in
                                 process (target <= 150)
  concurrent_images_delivered    of `--sessions` people asking for an image at once (all)
  concurrent_images_charged_right  of them, charged exactly one image's price (all)
  concurrent_images_wall_s       from the first request to the last badge

Usage: .venv/bin/python bench/images.py [--images 30] [--photos 20] [--sessions 20]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from PIL import Image

from agents import vision
from agents.catalog import load_catalog
from agents.prices import Pricing
from auth import passwords
from credits.ledger import UNITS_PER_CREDIT
from settings import ROOT, Settings
from storage.engine import create_engine
from storage.ledger import ledger_from_settings
from storage.migrate import upgrade_async
from tests.e2e.client import ChatSession, login, messages
from tests.e2e.process import app_process, free_port

PASSWORD = "bench-password-long-enough"
STUDIO = ROOT / "tests" / "fakes" / "studio.toml"
WELCOME = 1000 * UNITS_PER_CREDIT


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def one_image_units() -> int:
    """What one default image (1024x1024, 4 steps of the cheapest model) costs."""
    model = load_catalog(STUDIO, lambda _: "set", "smollm2-135m").models["studio-schnell"]
    assert model.image is not None
    return Pricing(Decimal("0.024")).image(model.image, 1024, 1024, 4)


async def image_done(chat: ChatSession, after: int) -> None:
    """The image is in the chat and its charge on the badge."""
    await chat.wait_until(
        lambda events: any("/images/" in m["output"] for m in messages(events)), after, 60
    )
    await chat.wait_for_badge(after)


async def overhead(chat: ChatSession, studio: str, count: int) -> None:
    took, provider = [], []
    async with httpx.AsyncClient(base_url=studio) as fake:
        for n in range(count + 3):  # the first three warm the app up
            await fake.post("/took")  # forget the times so far
            start = len(chat.events)
            began = time.perf_counter()
            await chat.emit_message(f"/image a lighthouse at dusk, take {n}")
            await image_done(chat, start)
            total = time.perf_counter() - began
            if n < 3:
                continue
            [provider_s] = (await fake.post("/took")).json()
            took.append((total - provider_s) * 1000)
            provider.append(provider_s * 1000)
    print(f"image_overhead_ms_p50: {statistics.median(took):.1f}")
    print(f"image_overhead_ms_p95: {percentile(took, 95):.1f}")
    print(f"provider_ms_p50: {statistics.median(provider):.1f}")


def vision_prep(count: int) -> None:
    """A 12-megapixel photo-like JPEG (grain over colour: as hard to decode as a real photo)."""
    colour = Image.new("RGB", (4000, 3000), (40, 110, 190))
    grain = Image.effect_noise((4000, 3000), 50).convert("RGB")
    out = io.BytesIO()
    Image.blend(colour, grain, 0.35).save(out, "JPEG", quality=90)
    photo = out.getvalue()
    took = []
    for _ in range(count + 2):
        began = time.perf_counter()
        vision.prepare(photo, "photo.jpg", 20 * 2**20, 25_000_000)
        took.append((time.perf_counter() - began) * 1000)
    print(f"vision_photo_mb: {len(photo) / 2**20:.1f}")
    print(f"vision_prep_ms_p50: {statistics.median(took[2:]):.1f}")


async def concurrent(base_url: str, data_dir: Path, engine: object, sessions: int) -> None:
    users = [f"person{n}@example.com" for n in range(sessions)]
    for user in users:
        await passwords.create(engine, user, PASSWORD)  # type: ignore[arg-type]
    chats = [ChatSession(base_url, await login(base_url, u, PASSWORD)) for u in users]
    await asyncio.gather(*(c.connect() for c in chats))
    await asyncio.gather(*(c.wait_for_badge(0) for c in chats))
    began = time.perf_counter()
    starts = [await c.emit_message("/image twenty lighthouses") for c in chats]
    await asyncio.gather(*(image_done(c, s) for c, s in zip(chats, starts, strict=True)))
    wall = time.perf_counter() - began
    delivered = sum(
        any("/images/" in m["output"] for m in messages(c.events[s:]))
        for c, s in zip(chats, starts, strict=True)
    )
    ledger = ledger_from_settings(Settings(data_dir=data_dir))
    await ledger.start(background=False)
    try:
        price = one_image_units()
        right = sum([(await ledger.balance(u)).available == WELCOME - price for u in users])
    finally:
        await ledger.close()
    for chat in chats:
        await chat.close()
    print(f"concurrent_images_delivered: {delivered}/{sessions}")
    print(f"concurrent_images_charged_right: {right}/{sessions}")
    print(f"concurrent_images_wall_s: {wall:.2f}")


async def run(args: argparse.Namespace) -> None:
    vision_prep(args.photos)
    port = free_port()
    fake = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.image_server", "--port", str(port), "--textured",
        cwd=ROOT,
    )  # fmt: skip
    studio = f"http://127.0.0.1:{port}"
    await wait_up(studio)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-images-"))
    db = f"sqlite+aiosqlite:///{(data_dir / 'app.db').resolve()}"
    await upgrade_async(db)
    engine = create_engine(db)
    await passwords.create(engine, "painter@example.com", PASSWORD)
    overrides = dict(
        MODELS_FILE=str(STUDIO), STUDIO_BASE_URL=f"{studio}/v1", ADMIN_EMAIL="admin@example.com",
        ADMIN_PASSWORD=PASSWORD, LOG_LEVEL="WARNING",
        LOGIN_ATTEMPTS_PER_ADDRESS="100000/minute", LOGIN_ATTEMPTS_PER_ACCOUNT="100000/minute",
    )  # fmt: skip
    try:
        with app_process(data_dir, **overrides) as (base_url, _):
            chat = ChatSession(base_url, await login(base_url, "painter@example.com", PASSWORD))
            await chat.connect()
            await chat.wait_for_badge(0)
            await overhead(chat, studio, args.images)
            await chat.close()
            await concurrent(base_url, data_dir, engine, args.sessions)
    finally:
        await engine.dispose()
        fake.terminate()
        await fake.wait()


async def wait_up(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                await http.get(f"{url}/v1/models")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError("the fake studio did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

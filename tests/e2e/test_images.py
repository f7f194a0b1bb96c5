"""Images and vision through the real app process, with the loopback image provider.

Quote, confirm, the progress bar, the thumbnails, the full image for its owner only, the charge
equal to the priced images delivered; cancel; every fault; Stop; an image question; the router's
overrides; a reopened chat; and `verify` after each story.
"""

from __future__ import annotations

import asyncio
import io
import re
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from PIL import Image

from agents.catalog import load_catalog
from agents.prices import Pricing
from credits.ledger import UNITS_PER_CREDIT
from credits.store import Ledger
from tests.e2e.client import ChatSession, login, messages, steps
from tests.e2e.conftest import STUDIO, RunningApp, Studio, ledger_beside, new_user, open_chat

pytestmark = pytest.mark.e2e

CATALOG = load_catalog(STUDIO, lambda _: "set", "smollm2-135m")
PRICING = Pricing(Decimal("0.024"))
WELCOME = 1000 * UNITS_PER_CREDIT
IMAGE_LINK = re.compile(r"\(/images/([\w-]+)\)")


@pytest.fixture
async def ledger(studio: Studio) -> AsyncIterator[Ledger]:
    async with ledger_beside(studio.data_dir) as book:
        yield book


def per_image(model_id: str, width: int, height: int, steps_: int | None) -> int:
    spec = CATALOG.models[model_id].image
    assert spec is not None
    return PRICING.image(spec, width, height, steps_)


async def person(studio: Studio, **choices: Any) -> tuple[str, ChatSession]:
    """A new person in a new chat, with these image choices saved (and asked above 0 credits:
    every image is quoted first, unless `ask_above` is given)."""
    user, password = await new_user(studio)  # type: ignore[arg-type]
    chat = await open_chat(studio, user, password)  # type: ignore[arg-type]
    await choose(studio, chat, user, **{"ask_above": 0, **choices})
    return user, chat


async def choose(studio: Studio, chat: ChatSession, user: str, **choices: Any) -> None:
    """Change the chat settings as the settings panel does, and wait until they are kept."""
    await chat.change_settings(
        {f"image_{k}" if k != "ask_above" else k: v for k, v in choices.items()}
    )
    wanted = {k: (None if v == "default" else v) for k, v in choices.items() if k != "seed"}
    async with asyncio.timeout(10):
        while True:
            row = saved_choices(studio, user)
            if row and all(
                str(row.get(k)) == str(v) for k, v in wanted.items() if k != "steps" or v
            ):
                return
            await asyncio.sleep(0.05)


def saved_choices(studio: Studio, user: str) -> dict[str, Any]:
    with sqlite3.connect(studio.data_dir / "app.db") as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM image_choices WHERE identifier = ?", (user,)).fetchone()
        return dict(row) if row else {}


def quote_action(events: list[tuple[str, Any]], name: str = "image_confirm") -> dict[str, Any]:
    found = [d for n, d in events if n == "action" and d.get("name") == name]
    assert found, [n for n, _ in events]
    return found[-1]


def said(events: list[tuple[str, Any]]) -> str:
    every = [m["output"] for kind in ("assistant_message",) for m in messages(events, kind)]
    errors = [d.get("output", "") for n, d in events if n == "new_message" and d.get("isError")]
    return "\n".join(every + errors)


async def confirmed(chat: ChatSession, action: dict[str, Any]) -> list[tuple[str, Any]]:
    """Press Confirm and wait for the images' message to be final (then the badge)."""
    start = len(chat.events)
    assert await chat.call_action(action) == 200
    await chat.wait_until(lambda ev: any(
        n == "element" and d.get("name") == "ImageProgress" and d["props"]["state"] != "working"
        for n, d in ev), start, timeout=60)  # fmt: skip
    await chat.wait_for_badge(start)
    return chat.events[start:]


async def fetch(studio: Studio, cookies: httpx.Cookies | None, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=studio.base_url, cookies=cookies) as http:
        return await http.get(path)


async def test_an_image_is_quoted_confirmed_watched_kept_and_charged(
    studio: Studio, ledger: Ledger
) -> None:
    studio.fake.step_s = 0.2
    try:
        user, chat = await person(studio, size="512x512", steps=8, count=2, seed=11)
        asked = await chat.send("draw a lighthouse at dusk")
        [route] = steps(asked, "tool")
        price = per_image("studio-schnell", 512, 512, 8)
        assert "**Image** · Your message asks for a picture." in route["output"]
        assert "Studio FLUX schnell** · 512x512 · 8 steps · 2 images · seed 11" in route["output"]
        assert (await ledger.balance(user)).available == WELCOME  # nothing held before Confirm
        assert not studio.fake.image_requests or all(
            r["prompt"] != "draw a lighthouse at dusk" for r in studio.fake.image_requests
        )
        done = await confirmed(chat, quote_action(asked))
    finally:
        studio.fake.step_s = 0.0
    bars = [d["props"] for n, d in done if n == "element" and d.get("name") == "ImageProgress"]
    working = [b["percent"] for b in bars if b["state"] == "working"]
    assert len(working) >= 3 and working == sorted(working) and working[-1] < 100
    assert bars[-1]["state"] == "done" and bars[-1]["percent"] == 100 and bars[-1]["done"] == 2
    [result] = [m for m in messages(done) if "/images/" in m["output"]]
    ids = IMAGE_LINK.findall(result["output"])
    assert len(set(ids)) == 2 and f"/images/{ids[0]}/thumb" in result["output"]
    assert (await ledger.balance(user)).available == WELCOME - 2 * price
    [charged] = [t for t in await ledger.charges(user) if t.meta.get("kind") == "image"]
    assert charged.amount == 2 * price and charged.meta["model"] == "studio-schnell"

    owner = chat.cookies
    full = await fetch(studio, owner, f"/images/{ids[0]}")
    assert full.status_code == 200 and full.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(full.content)) as image:
        assert image.size == (512, 512)
    thumb = await fetch(studio, owner, f"/images/{ids[0]}/thumb")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    download = await fetch(studio, owner, f"/images/{ids[0]}?download=1")
    assert download.headers["content-disposition"].startswith("attachment;")
    other_user, password = await new_user(studio)  # type: ignore[arg-type]
    other = await login(studio.base_url, other_user, password)
    for path in (f"/images/{ids[0]}", f"/images/{ids[0]}/thumb", "/images/nope"):
        refused = await fetch(studio, other, path)
        assert refused.status_code == 404 and refused.json() == {
            "detail": "You have no such image."
        }
    assert (await fetch(studio, None, f"/images/{ids[0]}")).status_code == 401

    # The same quote confirmed again (a double click, a second tab) runs nothing more.
    before = len(studio.fake.image_requests)
    again = len(chat.events)
    assert await chat.call_action(quote_action(asked)) == 200
    await chat.wait_until(lambda ev: "answered already" in said(ev), again)
    assert len(studio.fake.image_requests) == before
    assert (await ledger.balance(user)).available == WELCOME - 2 * price
    await chat.close()


async def test_cancel_charges_nothing_and_runs_nothing(studio: Studio, ledger: Ledger) -> None:
    user, chat = await person(studio)
    before = len(studio.fake.image_requests)
    asked = await chat.send("/image a red fox in the snow")
    start = len(chat.events)
    assert await chat.call_action(quote_action(asked, "image_cancel")) == 200
    await chat.wait_until(lambda ev: "Cancelled: nothing was spent." in said(ev), start)
    assert await chat.call_action(quote_action(asked)) == 200  # Confirm after Cancel: nothing
    await chat.wait_until(lambda ev: "answered already" in said(ev), start)
    assert len(studio.fake.image_requests) == before
    assert (await ledger.balance(user)).available == WELCOME
    await chat.close()


@pytest.mark.parametrize(
    ("mode", "good", "told"),
    [
        ("500", 0, "failed (HTTP 500)"),
        ("422", 0, "refused the request"),
        ("429", 0, "busy (HTTP 429"),
        ("broken", 0, "broken image"),
        ("cut-jpeg", 0, "broken image"),
        ("die", 0, "could not be reached"),
        ("slow", 0, "did not answer in time"),
        ("fewer", 1, "fewer images than asked"),
        ("500", 2, "failed (HTTP 500)"),
    ],
)
async def test_a_fault_charges_exactly_the_images_delivered(
    studio: Studio, ledger: Ledger, mode: str, good: int, told: str
) -> None:
    user, chat = await person(studio, size="256x256", steps=2, count=3)
    asked = await chat.send("/image a teapot")
    with studio.fake.behaving(image_mode=mode, good_images=good, admitted=0, slow_s=5):
        done = await confirmed(chat, quote_action(asked))
    delivered = min(good, 3) if mode != "fewer" else 1
    text = said(done)
    assert f"{3 - delivered} of 3 images did not come back" in text and told in text
    assert len(set(IMAGE_LINK.findall(text))) == delivered
    price = per_image("studio-schnell", 256, 256, 2)
    assert (await ledger.balance(user)).available == WELCOME - delivered * price
    assert ("Nothing was charged." in text) == (delivered == 0)
    # The app keeps serving: the next request in the same chat works.
    again = await chat.send("/image a teapot, again")
    await confirmed(chat, quote_action(again))
    assert (await ledger.balance(user)).available == WELCOME - (delivered + 3) * price
    await chat.close()


async def test_stop_keeps_and_charges_only_the_images_shown(studio: Studio, ledger: Ledger) -> None:
    user, chat = await person(studio, size="256x256", steps=4, count=1)
    asked = await chat.send("/image a slow sunrise")
    with studio.fake.behaving(step_s=1.0):
        start = len(chat.events)
        assert await chat.call_action(quote_action(asked)) == 200
        await chat.wait_until(
            lambda ev: any(n == "element" and d.get("name") == "ImageProgress" for n, d in ev),
            start,
        )
        await chat.sio.emit("stop")
        await chat.wait_until(lambda ev: "Stopped: 0 of 1 images" in said(ev), start)
    await chat.wait_for_badge(start)
    assert (await ledger.balance(user)).available == WELCOME
    await chat.close()


async def test_a_quote_below_the_persons_threshold_runs_at_once(
    studio: Studio, ledger: Ledger
) -> None:
    user, chat = await person(studio, ask_above=20, model="studio-gpt-image", size="1024x1536")
    start = len(chat.events)
    await chat.send("/image a poster of a jazz night")
    await chat.wait_until(lambda ev: "/images/" in said(ev), start)
    await chat.wait_for_badge(start)
    assert (await ledger.balance(user)).available == WELCOME - per_image(
        "studio-gpt-image", 1024, 1536, None
    )
    await chat.close()


async def test_settings_the_model_does_not_take_are_refused(studio: Studio) -> None:
    user, chat = await person(studio)
    start = len(chat.events)
    await chat.change_settings({"image_model": "studio-gpt-image", "image_size": "512x512"})
    await chat.wait_until(lambda ev: "1024x1024, 1536x1024, 1024x1536 only" in said(ev), start)
    assert saved_choices(studio, user).get("model") == "studio-schnell"
    await chat.change_settings({"image_steps": "many"})
    await chat.wait_until(lambda ev: "must be a whole number" in said(ev), start)
    await chat.close()


async def test_no_just_answer_in_text_answers_the_request_in_text(
    studio: Studio, ledger: Ledger
) -> None:
    user, chat = await person(studio)
    await chat.send("draw a lighthouse at dusk")
    answered = await chat.turn("no, just answer in text")
    [step] = steps(answered)
    assert "Chat · You asked for a text answer." in step["output"]
    assert (await ledger.balance(user)).available < WELCOME  # a chat answer, charged as one
    assert not IMAGE_LINK.findall(said(answered))
    await chat.close()


async def test_an_open_quote_is_shown_again_when_the_chat_is_reopened_and_images_stay(
    studio: Studio, ledger: Ledger
) -> None:
    _, chat = await person(studio, size="256x256", steps=1)
    made = await chat.send("/image a blue boat")
    done = await confirmed(chat, quote_action(made))
    [kept] = set(IMAGE_LINK.findall(said(done)))
    await chat.send("/image a green boat")
    thread_id = chat.thread_id
    await chat.close()

    back = ChatSession(studio.base_url, chat.cookies, thread_id=thread_id)
    await back.connect()
    await back.wait_until(lambda ev: any(
        n == "action" and d.get("name") == "image_confirm" for n, d in ev))  # fmt: skip
    shown = said(back.events)
    assert "a green boat" in shown and "a blue boat" not in shown.split("Make this image?")[-1]
    async with httpx.AsyncClient(base_url=studio.base_url, cookies=chat.cookies) as http:
        thread = (await http.get(f"/project/thread/{thread_id}")).json()
    assert any(f"/images/{kept}/thumb" in (s.get("output") or "") for s in thread["steps"])
    done = await confirmed(back, quote_action(back.events))
    assert len(set(IMAGE_LINK.findall(said(done)))) == 1
    await back.close()


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG", quality=90)
    return out.getvalue()


async def test_an_image_question_is_answered_by_a_model_that_sees(
    studio: Studio, ledger: Ledger
) -> None:
    user, chat = await person(studio)
    upload = await chat.upload("red.jpg", jpeg((220, 30, 30), (4000, 3000)), "image/jpeg")
    start = len(chat.events)
    asked = await chat.send("What colour is this?", files=[upload])
    await chat.wait_for_badge(start)
    [route] = steps(asked, "tool")
    assert "**Vision**" in route["output"]
    assert "SmolLM2 135M (local) cannot see images: Studio Gemma 3 27B (vision)" in route["output"]
    answer = said(asked)
    assert "The image is 1000x750; its dominant colour is red" in answer
    [sent] = [r for r in studio.fake.requests if isinstance(r["messages"][-1]["content"], list)][
        -1:
    ]
    parts = sent["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What colour is this?"}
    assert parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    [charge] = [t for t in await ledger.charges(user) if t.meta.get("kind") == "vision"]
    model = CATALOG.models["studio-vision"]
    tokens_in = int(charge.meta["tokens_in"])
    assert tokens_in > 85 + 170 * 4  # the image's tiles, as the provider reported them
    assert charge.amount == PRICING.tokens(model, tokens_in, int(charge.meta["tokens_out"]))
    # Memory keeps what was asked and attached, not the image: a follow-up is plain chat.
    followed = await chat.turn("thanks")
    assert steps(followed)  # answered
    # The photo stays in the thread, for its owner only.
    [photo] = await kept_elements(studio, chat)
    assert photo["url"].startswith("/element-files/") and photo["name"] == "red.jpg"
    kept = await fetch(studio, chat.cookies, photo["url"])
    assert kept.status_code == 200 and kept.content[:2] == b"\xff\xd8"
    assert kept.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in kept.headers.get_list("content-security-policy")
    other_user, password = await new_user(studio)  # type: ignore[arg-type]
    stranger = await fetch(studio, await login(studio.base_url, other_user, password), photo["url"])
    assert stranger.status_code == 404
    assert (await fetch(studio, None, photo["url"])).status_code == 401
    await chat.close()


async def kept_elements(studio: Studio, chat: ChatSession) -> list[dict[str, Any]]:
    """The elements kept with the chat's thread, once there are some (they are written after
    their message, off the chat's path)."""
    async with httpx.AsyncClient(base_url=studio.base_url, cookies=chat.cookies) as http:
        for _ in range(100):
            thread = (await http.get(f"/project/thread/{chat.thread_id}")).json()
            if thread.get("elements"):
                return list(thread["elements"])
            await asyncio.sleep(0.1)
    raise AssertionError("no element was kept")


@pytest.mark.parametrize(
    ("name", "data", "mime", "told"),
    [
        ("doc.png", b"%PDF-1.7 pretending to be a PNG", "image/png", "not an image we can read"),
        ("huge.png", None, "image/png", "at most 25 megapixels"),
    ],
)
async def test_an_upload_that_is_not_a_sane_image_is_refused(
    studio: Studio, ledger: Ledger, name: str, data: bytes | None, mime: str, told: str
) -> None:
    if data is None:
        bomb = io.BytesIO()
        Image.new("1", (20000, 20000)).save(bomb, "PNG")
        data = bomb.getvalue()
    user, chat = await person(studio)
    upload = await chat.upload(name, data, mime)
    asked = await chat.send("what is this?", files=[upload])
    assert told in said(asked) and "Nothing was spent." in said(asked)
    assert (await ledger.balance(user)).available == WELCOME
    await chat.close()


async def test_the_offline_default_says_what_to_configure(app: RunningApp) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    image = await chat.send("/image a lighthouse")
    assert "No image model is configured here" in said(image)
    upload = await chat.upload("red.jpg", jpeg((220, 30, 30)), "image/jpeg")
    seen = await chat.send("what is this?", files=[upload])
    assert "No model here can see images" in said(seen)
    await chat.close()


async def test_partial_images_a_provider_streams_show_before_the_image(
    studio: Studio, ledger: Ledger
) -> None:
    user, chat = await person(studio, model="studio-gpt-image", size="1024x1024", count=1)
    asked = await chat.send("/image a jazz poster")
    with studio.fake.behaving(step_s=0.3):
        done = await confirmed(chat, quote_action(asked))
    bars = [d["props"] for n, d in done if n == "element" and d.get("name") == "ImageProgress"]
    partial = [b for b in bars if b["partials"]]
    assert partial and all(p.startswith("data:image/jpeg;base64,") for p in partial[0]["partials"])
    assert bars.index(partial[0]) < next(i for i, b in enumerate(bars) if b["done"] == 1)
    assert bars[-1]["partials"] == []  # gone once the image is in
    assert len(set(IMAGE_LINK.findall(said(done)))) == 1
    assert (await ledger.balance(user)).available == WELCOME - per_image(
        "studio-gpt-image", 1024, 1024, None
    )
    await chat.close()

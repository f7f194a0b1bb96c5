"""The image client against the loopback provider, in each request shape and each way it fails;
the prices of images; where images are kept and who gets them; uploads prepared for vision."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine

from agents import images, vision
from agents.catalog import Catalog, Model, load_catalog
from agents.errors import CatalogError, ModelFailed
from agents.images import ImageFailed, ImageRefused, ImageRequest
from agents.prices import Pricing
from settings import ROOT
from storage import images as kept
from tests.fakes.image_server import FakeStudio, picture

STUDIO = ROOT / "tests" / "fakes" / "studio.toml"


@pytest.fixture(scope="module")
def studio() -> Iterator[FakeStudio]:
    fake = FakeStudio().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def catalog(studio: FakeStudio) -> Catalog:
    return load_catalog(STUDIO, {"STUDIO_BASE_URL": studio.base_url}.get, "smollm2-135m")


async def made(model: Model, request: ImageRequest, timeout_s: float = 5) -> list[images.Picture]:
    return [p async for p in images.pictures(model, request, timeout_s)]


@pytest.mark.parametrize(
    ("model_id", "size", "steps", "count", "kind"),
    [
        ("studio-schnell", (512, 384), 4, 3, "PNG"),
        ("studio-dev", (256, 256), 8, 1, "WEBP"),
        ("studio-gpt-image", (1536, 1024), None, 2, "PNG"),
        ("studio-dalle", (512, 512), None, 3, "PNG"),
        ("studio-chat-image", (1024, 1024), None, 2, "PNG"),
    ],
)
async def test_every_request_shape_brings_the_images_asked_for(
    catalog: Catalog, studio: FakeStudio, model_id: str, size: tuple[int, int], steps: int | None,
    count: int, kind: str,
) -> None:  # fmt: skip
    model = catalog.get(model_id)
    assert model.image is not None
    request = images.check(model.image, ImageRequest("a lighthouse", *size, steps, count, 7))
    studio.image_requests.clear()
    pictures = await made(model, request)
    assert [(p.format, p.width, p.height) for p in pictures] == [(kind, *size)] * count
    sent = studio.image_requests
    if model.image.api == "images":  # Nebius: one request an image, seeds counted up
        assert sorted(r["seed"] for r in sent) == list(range(7, 7 + count))
        assert {r["num_inference_steps"] for r in sent} == {steps}
        assert {(r["width"], r["height"], r["response_format"]) for r in sent} == {
            (*size, "b64_json")
        }
    elif model.image.api == "openai" and model.image.partials:  # streamed: one request an image
        assert [(r["size"], r["n"]) for r in sent] == [(f"{size[0]}x{size[1]}", 1)] * count
    elif model.image.api == "openai":
        assert [(r["size"], r["n"], r["response_format"]) for r in sent] == [
            (f"{size[0]}x{size[1]}", count, "b64_json")
        ]
    else:
        assert len(sent) == count and all(r["modalities"] == ["image", "text"] for r in sent)


async def test_the_same_request_makes_the_same_pictures(catalog: Catalog) -> None:
    model = catalog.get("studio-schnell")
    request = ImageRequest("a fox", 256, 256, 4, 1, 42)
    first, again = await made(model, request), await made(model, request)
    assert first[0].data == again[0].data == picture("a fox", 42, 0, 256, 256, "png")


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("422", "refused the request: width must be a multiple of 64"),
        ("429", "busy (HTTP 429"),
        ("500", "failed (HTTP 500): boom"),
        ("broken", "broken image (bad base64)"),
        ("truncated", "broken image"),
        ("die", "could not be reached (RemoteProtocolError)"),
        ("slow", "did not answer in time"),
    ],
)
async def test_each_failure_is_said_and_delivers_nothing(
    catalog: Catalog, studio: FakeStudio, mode: str, said: str
) -> None:
    model = catalog.get("studio-schnell")
    with (
        studio.behaving(image_mode=mode, admitted=0, slow_s=3),
        pytest.raises(ImageFailed) as failed,
    ):
        await made(model, ImageRequest("x", 256, 256, 4, 2), timeout_s=1)
    assert len(failed.value.reasons) == 2
    assert said in str(failed.value)


async def test_some_images_can_come_while_others_fail(catalog: Catalog, studio: FakeStudio) -> None:
    model = catalog.get("studio-schnell")
    got: list[images.Picture] = []
    with (
        studio.behaving(image_mode="500", admitted=0, good_images=2),
        pytest.raises(ImageFailed) as failed,
    ):
        async for p in images.pictures(model, ImageRequest("x", 256, 256, 4, 3), 5):
            got.append(p)
    assert len(got) == 2 and len(failed.value.reasons) == 1


@pytest.mark.parametrize("model_id", ["studio-dalle", "studio-schnell", "studio-chat-image"])
async def test_fewer_images_than_asked_are_counted(
    catalog: Catalog, studio: FakeStudio, model_id: str
) -> None:
    model = catalog.get(model_id)
    assert model.image is not None
    size = model.image.sizes[0] if model.image.sizes else (256, 256)
    request = ImageRequest("x", *size, model.image.default_steps, 2)
    got: list[images.Picture] = []
    with (
        studio.behaving(image_mode="fewer", admitted=0, good_images=1),
        pytest.raises(ImageFailed) as failed,
    ):
        async for p in images.pictures(model, request, 5):
            got.append(p)
    assert len(got) == 1
    assert len(failed.value.reasons) == 1


async def test_a_stopped_request_gives_up_the_images_still_out(
    catalog: Catalog, studio: FakeStudio
) -> None:
    model = catalog.get("studio-schnell")

    def out() -> list[asyncio.Task[object]]:
        return [
            t for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == "_images" and not t.done()
        ]  # fmt: skip

    with studio.behaving(step_s=0.5):
        task = asyncio.ensure_future(made(model, ImageRequest("x", 256, 256, 4, 3), 10))
        await asyncio.sleep(0.3)
        assert len(out()) == 3  # one request an image, all out
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # cancelled ones take a few turns of the loop to end
            if not out():
                break
            await asyncio.sleep(0.01)
        assert out() == []  # none left running after the Stop


@pytest.mark.parametrize(
    ("model_id", "request_", "said"),
    [
        ("studio-schnell", ImageRequest("x", 1000, 1024, 4, 1), "multiple of 64"),
        ("studio-schnell", ImageRequest("x", 4096, 1024, 4, 1), "64-2048"),
        ("studio-schnell", ImageRequest("x", 1024, 1024, 40, 1), "1-16 steps, not 40"),
        ("studio-schnell", ImageRequest("x", 1024, 1024, 4, 5), "1 to 4 images"),
        ("studio-schnell", ImageRequest("x" * 2001, 1024, 1024, 4, 1), "at most 2,000"),
        ("studio-schnell", ImageRequest("   ", 1024, 1024, 4, 1), "what the image should show"),
        ("studio-schnell", ImageRequest("x", 1024, 1024, 4, 1, -1), "seed"),
        ("studio-gpt-image", ImageRequest("x", 512, 512, None, 1), "1024x1024, 1536x1024"),
    ],
)
def test_requests_the_model_does_not_take_are_refused(
    catalog: Catalog, model_id: str, request_: ImageRequest, said: str
) -> None:
    spec = catalog.get(model_id).image
    assert spec is not None
    with pytest.raises(ImageRefused, match=said):
        images.check(spec, request_)


def test_an_image_costs_in_proportion_to_its_pixels_and_steps(catalog: Catalog) -> None:
    spec = catalog.get("studio-dev").image
    assert spec is not None
    pricing = Pricing(Decimal("0.001"))  # a credit is a tenth of a cent: 1 unit = $0.000001
    at_reference = pricing.image(spec, 1024, 1024, 28)
    assert at_reference == 7000  # $0.007
    assert pricing.image(spec, 512, 512, 28) == 1750
    assert pricing.image(spec, 1024, 1024, 14) == 3500
    assert pricing.image(spec, 2048, 1024, 56) == 28000
    fixed = catalog.get("studio-gpt-image").image
    assert fixed is not None
    assert pricing.image(fixed, 1536, 1024, None) == 16500


def test_a_malformed_image_entry_is_refused(tmp_path: Path) -> None:
    text = STUDIO.read_text()
    for broken, said in [
        (text.replace('api = "images"', 'api = "dalle"', 1), "api must be one of"),
        (text.replace("reference_steps = 4\n", "", 1), "steps and reference_steps"),
        (text.replace('usd = "0.0013"', "usd = 0.0013", 1), "quoted decimal"),
        (text.replace("default_steps = 4", "default_steps = 40", 1), "default_steps"),
        (text.replace("most_images = 4", "most_imgs = 4", 1), "unknown keys"),
    ]:
        path = tmp_path / "models.toml"
        path.write_text(broken)
        with pytest.raises(CatalogError, match=said):
            load_catalog(path, {"STUDIO_BASE_URL": "http://x"}.get, "smollm2-135m")


def test_the_shipped_image_models_are_priced_at_a_reference(catalog: Catalog) -> None:
    shipped = load_catalog(ROOT / "models.toml", lambda _: None, "smollm2-135m")
    makers = [m for m in shipped.models.values() if m.can("image")]
    assert {m.image.api for m in makers if m.image} == {"images", "openai", "chat"}
    assert all(m.image and m.image.usd > 0 for m in makers)


def test_a_provider_image_that_is_not_one_is_not_delivered() -> None:
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG")  # 400 megapixels in a few kB
    for b64, said in [
        (base64.b64encode(bomb.getvalue()).decode(), "too large"),
        (base64.b64encode(b"GIF89a" + b"\0" * 100).decode(), "broken"),
        (base64.b64encode(_gif()).decode(), "GIF file"),
    ]:
        with pytest.raises(ModelFailed, match=said):
            images.decode(b64)


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "GIF")
    return out.getvalue()


# Where images are kept


async def test_an_image_is_served_to_its_owner_only_and_never_when_changed(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    shelf = kept.Folder(tmp_path / "images")
    data = picture("a fox", 1, 0, 640, 480, "jpg")
    stored = await kept.keep(
        engine, shelf, kept.Made("ann", "t1", "image:abc", "studio-schnell", "a fox"), data,
        "image/jpeg", 640, 480,
    )  # fmt: skip
    full = await kept.fetch(engine, shelf, stored.id, "ann", "full")
    assert full is not None and full.data == data and full.content_type == "image/jpeg"
    thumb = await kept.fetch(engine, shelf, stored.id, "ann", "thumb")
    assert thumb is not None and thumb.content_type == "image/jpeg"
    with Image.open(io.BytesIO(thumb.data)) as small:
        assert small.size == (384, 288)
    assert await kept.fetch(engine, shelf, stored.id, "bob", "full") is None
    assert await kept.fetch(engine, shelf, "no-such-image", "ann", "full") is None
    # Changed behind the app's back: not served.
    path = next((tmp_path / "images").rglob(f"{stored.id}-full"))
    path.write_bytes(data[:-10] + b"0123456789")
    assert await kept.fetch(engine, shelf, stored.id, "ann", "full") is None
    path.unlink()
    assert await kept.fetch(engine, shelf, stored.id, "ann", "full") is None
    assert await kept.fetch(engine, shelf, stored.id, "ann", "thumb") is not None


def test_a_provider_image_whose_pixels_stop_short_is_not_delivered() -> None:
    whole = picture("cut", 0, 0, 256, 256, "jpg", textured=True)
    with pytest.raises(ModelFailed, match="broken image"):
        images.decode(base64.b64encode(whole[: len(whole) // 2]).decode())  # its header reads


async def test_a_thumbnail_is_made_beside_once_and_when_first_served_otherwise(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    shelf = kept.Folder(tmp_path / "images")
    made = kept.Made("ann", "t1", "image:abc", "m", "p")
    data = picture("a boat", 2, 0, 1024, 1024, "png", textured=True)
    soon = await kept.keep(engine, shelf, made, data, "image/png", 1024, 1024)
    kept.thumbnail_soon(engine, shelf, soon.id, data)
    await kept.finish_thumbnails()
    thumb = await kept.fetch(engine, shelf, soon.id, "ann", "thumb")
    assert thumb is not None and thumb.sha256 == hashlib.sha256(thumb.data).hexdigest()
    with Image.open(io.BytesIO(thumb.data)) as small:
        assert small.size == (384, 384)
    # Never made (the app stopped first): made when first asked for, from the kept image...
    later = await kept.keep(engine, shelf, made, data, "image/png", 1024, 1024)
    first = await kept.fetch(engine, shelf, later.id, "ann", "thumb")
    again = await kept.fetch(engine, shelf, later.id, "ann", "thumb")
    assert first is not None and again is not None and first.data == again.data == thumb.data
    # ...unless that image was changed behind the app's back.
    changed = await kept.keep(engine, shelf, made, data, "image/png", 1024, 1024)
    next((tmp_path / "images").rglob(f"{changed.id}-full")).write_bytes(data[:-4] + b"0000")
    assert await kept.fetch(engine, shelf, changed.id, "ann", "thumb") is None


async def test_a_thumbnail_asked_for_while_it_is_made_is_not_made_again(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page asks for a thumbnail as soon as its image shows, usually before the one made
    beside is done: those requests wait for it rather than decode the image once more each."""
    decoded, niceness = [], []

    def counted(data: bytes) -> bytes:
        decoded.append(len(data))
        niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(data)

    real = kept.thumbnail
    monkeypatch.setattr(kept, "thumbnail", counted)
    shelf = kept.Folder(tmp_path / "images")
    data = picture("a kite", 3, 0, 1024, 1024, "png", textured=True)
    stored = await kept.keep(engine, shelf, kept.Made("ann", "t1", "image:k", "m", "p"), data,
                             "image/png", 1024, 1024)  # fmt: skip
    kept.thumbnail_soon(engine, shelf, stored.id, data)
    asked = await asyncio.gather(
        *(kept.fetch(engine, shelf, stored.id, "ann", "thumb") for _ in range(3))
    )
    await kept.finish_thumbnails()
    assert decoded == [len(data)]
    assert niceness[0] >= 10  # on a thread that yields the CPU to answers
    thumbs = {a.data for a in asked if a is not None}
    assert None not in asked and len(thumbs) == 1
    after = await kept.fetch(engine, shelf, stored.id, "ann", "thumb")
    assert after is not None and {after.data} == thumbs and decoded == [len(data)]


# Uploads for vision

MB = 2**20


def _jpeg(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=90)
    return out.getvalue()


def test_a_large_photo_is_sent_upright_and_scaled_to_what_the_model_reads() -> None:
    photo = Image.new("RGB", (4000, 3000), (30, 70, 220))
    exif = photo.getexif()
    exif[0x0112] = 6  # taken rotated: shown turned 90 degrees
    out = io.BytesIO()
    photo.save(out, "JPEG", exif=exif)
    seen = vision.prepare(out.getvalue(), "photo.jpg", 10 * MB, 25_000_000)
    # Decoded at a quarter of its size (JPEG's reduced decoding), within 10% of 768x1024.
    assert (seen.width, seen.height) == (750, 1000)
    assert seen.source == "JPEG 4000x3000"
    assert seen.data_uri.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(seen.data_uri.split(",")[1]))) as sent:
        assert sent.size == (750, 1000)
    assert seen.tokens == 85 + max(170 * 4, 27 * 36)


def test_a_large_png_is_scaled_to_the_short_side_the_model_reads() -> None:
    out = io.BytesIO()
    Image.new("RGB", (3000, 2000), (30, 170, 60)).save(out, "PNG")
    seen = vision.prepare(out.getvalue(), "wide.png", 10 * MB, 25_000_000)
    assert (seen.width, seen.height) == (1152, 768)


def test_a_transparent_png_is_laid_on_white() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (100, 50), (0, 0, 0, 0)).save(out, "PNG")
    seen = vision.prepare(out.getvalue(), "clear.png", MB, 10**6)
    with Image.open(io.BytesIO(base64.b64decode(seen.data_uri.split(",")[1]))) as sent:
        assert sent.getpixel((50, 25)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"%PDF-1.7 not an image at all", "not an image we can read"),
        (_jpeg(64, 64)[:200], "not an image we can read"),
        (b"\x00" * (2 * MB), "2.0 MB; images up to 1 MB"),
        (None, "at most 25 megapixels"),  # a decompression bomb: refused from its header
        (b"BM" + b"\x00" * 60, "not an image we can read"),
    ],
)
def test_what_is_not_a_sane_image_is_refused(data: bytes | None, said: str) -> None:
    if data is None:
        bomb = io.BytesIO()
        Image.new("1", (20000, 20000)).save(bomb, "PNG")
        data = bomb.getvalue()
        assert len(data) < MB
    with pytest.raises(vision.NotAnImage, match=said):
        vision.prepare(data, "upload", MB, 25_000_000)


def test_a_bmp_is_refused_by_its_type() -> None:
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "BMP")
    with pytest.raises(vision.NotAnImage, match="BMP image; send a PNG, JPEG, WebP or GIF"):
        vision.prepare(out.getvalue(), "x.bmp", MB, 10**6)


async def test_a_streamed_image_shows_its_partials_before_it_comes(
    catalog: Catalog, studio: FakeStudio
) -> None:
    model = catalog.get("studio-gpt-image")
    seen: list[tuple[int, int]] = []

    async def preview(index: int, data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as partial:
            seen.append((index, partial.width))

    studio.image_requests.clear()
    got = [
        p async for p in images.pictures(model, ImageRequest("x", 1024, 1024, None, 2), 5, preview)
    ]
    assert len(got) == 2 and sorted(seen) == [(0, 1024), (0, 1024), (1, 1024), (1, 1024)]
    sent = studio.image_requests
    assert [(r["n"], r["stream"], r["partial_images"]) for r in sent] == [(1, True, 2)] * 2
    assert all("response_format" not in r for r in sent)  # gpt-image refuses it


async def test_a_stream_that_dies_after_a_partial_delivers_nothing(
    catalog: Catalog, studio: FakeStudio
) -> None:
    model = catalog.get("studio-gpt-image")
    partials: list[int] = []

    async def preview(index: int, data: bytes) -> None:
        partials.append(index)

    with studio.behaving(stream_dies=True), pytest.raises(ImageFailed) as failed:
        await made_with(model, ImageRequest("x", 1024, 1024, None, 1), preview)
    assert partials == [0]
    assert "could not be reached" in str(failed.value)


async def made_with(
    model: Model, request: ImageRequest, preview: images.Preview
) -> list[images.Picture]:
    return [p async for p in images.pictures(model, request, 5, preview)]

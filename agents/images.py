"""Images from a model behind an OpenAI-compatible API, in the three shapes providers use.

- `images`: `POST /images/generations` with Nebius's fields (`width`, `height`,
  `num_inference_steps`, `seed`, `response_format=b64_json`), one request per image, all at once;
- `openai`: the same endpoint with `size` and `n`, one request for all; or, where the model
  streams partial images, one streamed request per image, its previews handed on as they come;
- `chat`: `POST /chat/completions` with `modalities: ["image", "text"]`, the images coming back as
  data URLs in `choices[0].message.images` (OpenRouter), one request per image.

`pictures` yields each image as it arrives (`send`, then `arrivals`, where the caller has more to
do while the provider works), checked with Pillow (`decode`): a response that is not an image
(broken base64, a truncated file, a decompression bomb) is a failure of that image, never a
delivered one. What a request's failures were is told by `ImageFailed` once every image is in: what
was delivered before it stays delivered. Nothing here prices anything: the caller counts what came.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import io
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from contextlib import aclosing
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pybase64
from PIL import Image

from agents.catalog import ImageSpec, Model
from agents.errors import AgentError, ModelFailed, ModelUnreachable
from agents.remote import DONE, bearer, describe, event_data, pool, post

MOST_IMAGE_BYTES = 40 * 2**20  # one generated image, decoded
MOST_PIXELS = 4096 * 4096  # larger than any model makes: a bomb, not a picture


class ImageRefused(AgentError):
    """The image request does not fit the model (size, steps, count, prompt)."""


class ImageFailed(ModelFailed):
    """Some or all of the images asked for did not come back; `reasons` says why, one per image."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__(summary(reasons))


@dataclass(frozen=True)
class ImageRequest:
    """One request for `count` images of `width` x `height`, made in `steps` steps (None: the
    model takes no step count), with `seed` (None: the provider's choice)."""

    prompt: str
    width: int
    height: int
    steps: int | None
    count: int
    seed: int | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Picture:
    """One image delivered: its bytes as the provider sent them, and what Pillow found in them."""

    data: bytes
    format: str  # PNG, JPEG, WEBP
    width: int
    height: int
    sha256: str  # of `data`, hex

    @property
    def content_type(self) -> str:
        return Image.MIME[self.format]


def check(spec: ImageSpec, request: ImageRequest) -> ImageRequest:
    """`request` if the model accepts it, else `ImageRefused` saying what it accepts."""
    prompt = request.prompt.strip()
    if not prompt:
        raise ImageRefused("Say what the image should show.")
    if len(prompt) > spec.prompt_chars:
        raise ImageRefused(
            f"The description is {len(prompt):,} characters long; this model takes at most "
            f"{spec.prompt_chars:,}."
        )
    size = (request.width, request.height)
    if spec.sizes and size not in spec.sizes:
        allowed = ", ".join(f"{w}x{h}" for w, h in spec.sizes)
        raise ImageRefused(f"This model makes images of {allowed} only, not {request.size}.")
    least, most = spec.side
    if not spec.sizes and not all(
        least <= side <= most and side % spec.side_multiple == 0 for side in size
    ):
        raise ImageRefused(
            f"Each side must be {least}-{most} pixels, a multiple of {spec.side_multiple}; "
            f"{request.size} is not."
        )
    if spec.steps is None and request.steps is not None:
        request = ImageRequest(
            prompt, request.width, request.height, None, request.count, request.seed
        )
    if spec.steps is not None and not (
        request.steps is not None and spec.steps[0] <= request.steps <= spec.steps[1]
    ):
        raise ImageRefused(
            f"This model takes {spec.steps[0]}-{spec.steps[1]} steps, not {request.steps}."
        )
    if not 1 <= request.count <= spec.most_images:
        raise ImageRefused(f"Ask for 1 to {spec.most_images} images at a time.")
    if request.seed is not None and not 0 <= request.seed < 2**32:
        raise ImageRefused("A seed is a whole number from 0 to 4294967295.")
    return ImageRequest(prompt, *size, request.steps, request.count, request.seed)


Preview = Callable[[int, bytes], Awaitable[None]]  # (which image, a partial image's bytes)


@dataclass(frozen=True)
class Sent:
    """The provider requests of one `ImageRequest`, on their way (`send`); `arrivals` reads them."""

    calls: list[asyncio.Future[list[Picture]]]
    count: int

    def cancel(self) -> None:
        """Give up the requests still out."""
        for call in self.calls:
            call.cancel()


async def pictures(
    model: Model, request: ImageRequest, timeout_s: float, preview: Preview | None = None
) -> AsyncGenerator[Picture, None]:
    """Each image of `request` as it arrives; then `ImageFailed` if any did not."""
    coming = arrivals(send(model, request, timeout_s, preview))
    async with aclosing(coming):  # stopped: the requests still out are given up at once
        async for picture in coming:
            yield picture


def send(
    model: Model, request: ImageRequest, timeout_s: float, preview: Preview | None = None
) -> Sent:
    """The requests for `request`, sent now (the provider works while the caller goes on).
    Where the provider streams partial images (`partials` in the catalogue: OpenAI's image
    models), each is handed to `preview` as it comes."""
    assert model.image is not None, f"{model.id} makes no images"
    base = (model.provider.base_url or "").rstrip("/")
    headers = bearer(model.provider.api_key)
    client = pool(timeout_s)
    calls: list[Coroutine[Any, Any, list[Picture]]]
    if model.image.api == "openai" and model.image.partials:
        calls = [
            _streamed(client, base, headers, _openai_body(model, request, 1), n, preview)
            for n in range(request.count)
        ]
    elif model.image.api == "openai":
        calls = [_images(client, base, headers, _openai_body(model, request, request.count))]
    elif model.image.api == "images":
        calls = [
            _images(client, base, headers, _nebius_body(model, request, n))
            for n in range(request.count)
        ]
    else:
        calls = [_chat(client, base, headers, model, request) for _ in range(request.count)]
    return Sent([asyncio.ensure_future(call) for call in calls], request.count)


async def arrivals(sent: Sent) -> AsyncGenerator[Picture, None]:
    """Each image of `sent` as it arrives; then `ImageFailed` if any did not."""
    reasons: list[str] = []
    delivered = 0
    try:
        for done in asyncio.as_completed(sent.calls):
            try:
                for picture in await done:
                    if delivered < sent.count:  # more than asked for is not ours to keep
                        delivered += 1
                        yield picture
            except (ModelFailed, ModelUnreachable) as failed:
                reasons.append(str(failed))
    finally:  # stopped or failed: the requests still out are given up
        sent.cancel()
    if delivered < sent.count:
        missing = sent.count - delivered - len(reasons)
        reasons += ["The provider sent fewer images than asked for."] * max(missing, 0)
        raise ImageFailed(reasons)


def _nebius_body(model: Model, request: ImageRequest, n: int) -> dict[str, Any]:
    assert model.image is not None
    body: dict[str, Any] = {
        "model": model.name,
        "prompt": request.prompt,
        "width": request.width,
        "height": request.height,
        "response_format": "b64_json",
        "response_extension": model.image.extension,
        "seed": -1 if request.seed is None else (request.seed + n) % 2**32,
    }
    if request.steps is not None:
        body["num_inference_steps"] = request.steps
    return body


def _openai_body(model: Model, request: ImageRequest, n: int) -> dict[str, Any]:
    assert model.image is not None
    body: dict[str, Any] = {
        "model": model.name,
        "prompt": request.prompt,
        "size": request.size,
        "n": n,
    }
    if model.image.ask_b64:  # DALL-E answers with URLs unless asked; gpt-image refuses the field
        body["response_format"] = "b64_json"
    if model.image.partials:
        body |= {"stream": True, "partial_images": model.image.partials}
    return body


async def _streamed(
    client: httpx.AsyncClient,
    base: str,
    headers: dict[str, str],
    body: dict[str, Any],
    index: int,
    preview: Preview | None,
) -> list[Picture]:
    """One image streamed as server-sent events: `image_generation.partial_image` events, then
    `image_generation.completed` with the image."""
    try:
        async with client.stream(
            "POST", f"{base}/images/generations", json=body, headers=headers
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                raise ModelFailed(said(response))
            async for line in response.aiter_lines():
                data = event_data(line)
                if not data or data == DONE:
                    continue
                event = _event(data)
                kind, b64 = event.get("type"), event.get("b64_json")
                if kind == "error" or "error" in event:
                    raise ModelFailed(f"The image server failed: {describe(event.get('error'))}.")
                if not isinstance(b64, str):
                    continue
                if kind == "image_generation.completed":
                    return [await asyncio.to_thread(decode, b64)]
                if kind == "image_generation.partial_image" and preview is not None:
                    await preview(index, (await asyncio.to_thread(decode, b64)).data)
    except httpx.TimeoutException as exc:
        raise ModelUnreachable("The image server did not answer in time.") from exc
    except httpx.HTTPError as exc:
        raise ModelUnreachable(
            f"The image server could not be reached ({type(exc).__name__})."
        ) from exc
    raise ModelFailed("The image server ended its stream without the image.")


def _event(data: str) -> dict[str, Any]:
    try:
        event = orjson.loads(data)
    except ValueError as exc:
        raise ModelFailed("The image server sent a response we could not use.") from exc
    if not isinstance(event, dict):
        raise ModelFailed("The image server sent a response we could not use.")
    return event


async def _images(
    client: httpx.AsyncClient, base: str, headers: dict[str, str], body: dict[str, Any]
) -> list[Picture]:
    return await _post(client, f"{base}/images/generations", headers, body, _images_in_data)


def _images_in_data(answer: dict[str, Any]) -> list[str]:
    """The base64 images of an images-endpoint answer."""
    items = answer.get("data")
    if not isinstance(items, list):
        raise ModelFailed("The image server sent a response we could not use.")
    return [_b64_of(item) for item in items]


async def _chat(
    client: httpx.AsyncClient,
    base: str,
    headers: dict[str, str],
    model: Model,
    request: ImageRequest,
) -> list[Picture]:
    body: dict[str, Any] = {
        "model": model.name,
        "messages": [{"role": "user", "content": request.prompt}],
        "modalities": ["image", "text"],
    }
    if request.seed is not None:
        body["seed"] = request.seed
    return await _post(client, f"{base}/chat/completions", headers, body, _images_in_message)


def _images_in_message(answer: dict[str, Any]) -> list[str]:
    """The base64 images of a chat completion with image output."""
    try:
        images = answer["choices"][0]["message"].get("images") or []
        urls = [str(image["image_url"]["url"]) for image in images]
    except (LookupError, TypeError, AttributeError) as exc:
        raise ModelFailed("The image server sent a response we could not use.") from exc
    if not urls:
        raise ModelFailed("The model answered without an image.")
    return [_b64_of_data_url(url) for url in urls]


async def _post(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    images_in: Callable[[dict[str, Any]], list[str]],
) -> list[Picture]:
    """POST `body`; the images `images_in` finds in the answer, each checked."""
    response = await post(client, url, body, headers, "image server")
    if response.status_code >= 400:
        raise ModelFailed(said(response))
    # Megabytes of base64: parsed, decoded and checked off the event loop, in one hop.
    return await asyncio.to_thread(_pictures_in, response, images_in)


def _pictures_in(
    response: httpx.Response, images_in: Callable[[dict[str, Any]], list[str]]
) -> list[Picture]:
    try:
        answer = orjson.loads(response.content)  # megabytes: ~2x faster than the json module
    except ValueError as exc:
        raise ModelFailed("The image server sent a response we could not use.") from exc
    if not isinstance(answer, dict):
        raise ModelFailed("The image server sent a response we could not use.")
    return [decode(b64) for b64 in images_in(answer)]


def said(response: httpx.Response) -> str:
    """What an error answer means for the person."""
    try:
        detail = describe(response.json().get("error") or response.json().get("detail"))
    except (ValueError, AttributeError):
        detail = ""
    detail = f": {detail}" if detail and detail != "None" else ""
    match response.status_code:
        case 400 | 422:
            return f"The image server refused the request{detail}."
        case 402:
            return "The image provider's account cannot pay for this image (HTTP 402)."
        case 429:
            return "The image server is busy (HTTP 429: too many requests); try again shortly."
        case status:
            return f"The image server failed (HTTP {status}){detail}."


def _b64_of(item: object) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("b64_json"), str):
        raise ModelFailed("The image server sent an image in a form we could not use.")
    return str(item["b64_json"])


def _b64_of_data_url(url: str) -> str:
    head, _, data = url.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        raise ModelFailed("The image server sent an image in a form we could not use.")
    return data


def decode(b64: str) -> Picture:
    """The image in `b64`, checked: `ModelFailed` unless it decodes to a whole, sane image."""
    if len(b64) > MOST_IMAGE_BYTES * 4 // 3 + 4:
        raise ModelFailed("The image server sent an image larger than any it should make.")
    try:
        # SIMD where the CPU has it (chosen at run time), ~30x faster than binascii here; it
        # refuses what binascii's strict mode refuses, and stray padding too.
        data = pybase64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ModelFailed("The image server sent a broken image (bad base64).") from exc
    return inspect(data, MOST_PIXELS)


def inspect(data: bytes, most_pixels: int) -> Picture:
    """What Pillow finds in `data`: a whole PNG, JPEG or WebP image of at most `most_pixels`
    pixels, or `ModelFailed`. The size is read from the header (a decompression bomb is refused
    before a pixel is decoded); then the whole file is checked, as cheaply as each format allows:
    a PNG's every chunk and checksum (`verify`), a JPEG decoded at an eighth of its size (every
    byte of its data is still read: a truncated file fails), a WebP decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image_format, (width, height) = image.format, image.size
                if width * height > most_pixels:
                    raise ModelFailed("The image server sent an image too large to show.")
                if image_format == "PNG":
                    image.verify()
                else:
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    image.load()
    except ModelFailed:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ModelFailed("The image server sent an image too large to show.") from exc
    except (OSError, ValueError, SyntaxError, Warning) as exc:
        raise ModelFailed("The image server sent a broken image.") from exc
    if image_format not in ("PNG", "JPEG", "WEBP"):
        raise ModelFailed(f"The image server sent a {image_format} file, not a PNG, JPEG or WebP.")
    return Picture(data, image_format, width, height, hashlib.sha256(data).hexdigest())


def summary(reasons: list[str]) -> str:
    """Reasons, each once, with how many images each cost."""
    counted = {reason: reasons.count(reason) for reason in reasons}
    return (
        " ".join(reason if n == 1 else f"{reason} (x{n})" for reason, n in counted.items())
        or "No image came back."
    )


class Pace:
    """How long each image model takes, measured: seconds per step (or per image, for models
    without steps), starting from the catalogue's estimate and moving towards what is seen."""

    WEIGHT = Decimal("0.3")  # of each new measure

    def __init__(self) -> None:
        self.per_unit: dict[str, Decimal] = {}

    def estimate_s(self, model: Model, request: ImageRequest) -> float:
        """Seconds `request` should take on `model` (its images are made side by side)."""
        assert model.image is not None
        return float(self._per_unit(model) * (request.steps or 1))

    def observe(self, model: Model, request: ImageRequest, seconds: float) -> None:
        seen = Decimal(str(round(seconds, 3))) / (request.steps or 1)
        before = self._per_unit(model)
        self.per_unit[model.id] = before + (seen - before) * self.WEIGHT

    def _per_unit(self, model: Model) -> Decimal:
        assert model.image is not None
        first = model.image.seconds_per_step if model.image.steps else model.image.seconds_per_image
        return self.per_unit.get(model.id, first)

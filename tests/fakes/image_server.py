"""A loopback provider of images and vision, for tests: real HTTP, real pictures.

Extends the chat fake (tests/fakes/openai_server.py) with:
- `POST /v1/images/generations`, both shapes: Nebius's (`width`, `height`, `num_inference_steps`,
  `seed`, `response_extension`; one image a request) and OpenAI's (`size`, `n`; with `stream`, the
  partial images as server-sent events, then the image). Each image is
  drawn with Pillow, deterministically from the prompt, seed and index (a colour field with a
  stripe), as PNG, JPEG or WebP, after `step_s` seconds a step;
- `POST /v1/chat/completions` with `modalities` including "image": the images as data URLs in
  `choices[0].message.images` (OpenRouter);
- chat completions whose messages carry images: the answer is read from the pixels ("The image is
  640x480; its dominant colour is red (#dc1e1e).") and streamed with usage, the prompt counted
  as the text's words plus 85 + 170 per 512-pixel tile of each image.

`image_mode` fails on demand: "422", "429", "500" (that status), "slow" (waits `slow_s` first),
"broken" (bad base64), "truncated" (a cut PNG), "cut-jpeg" (a JPEG cut short: its header reads),
"fewer" (one image fewer than asked), "die" (the connection closes mid-answer). `good_images`
lets that many images through before failing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from tests.fakes.openai_server import FakeOpenAI

COLOURS = {
    "red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 70, 220), "yellow": (240, 220, 40),
    "white": (250, 250, 250), "black": (10, 10, 10), "orange": (250, 140, 20),
    "purple": (130, 40, 170),
}  # fmt: skip
FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}


def picture(
    prompt: str, seed: int, index: int, width: int, height: int, kind: str, textured: bool = False
) -> bytes:
    """The image this fake makes for these inputs, always the same bytes. `textured`: with grain
    over it, so that it weighs what a generated image does (a flat one compresses to nothing)."""
    digest = hashlib.sha256(f"{prompt}|{seed}|{index}".encode()).digest()
    names = sorted(COLOURS)
    background = COLOURS[names[digest[0] % len(names)]]
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, height * 3 // 8, width, height * 5 // 8), fill=tuple(digest[1:4]))
    if textured:
        grain = Image.effect_noise((width, height), 40).convert("RGB")
        image = Image.blend(image, grain, 0.25)
    out = io.BytesIO()
    image.save(out, FORMATS.get(kind, "PNG"))
    return out.getvalue()


def colour_of(image: Image.Image) -> tuple[str, tuple[int, int, int]]:
    """The dominant colour of `image`, by name and RGB."""
    small = image.convert("RGB").resize((32, 32))
    counts = small.getcolors(32 * 32) or []
    _, rgb = max(counts)
    name = min(
        COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(COLOURS[n], rgb, strict=True))
    )
    return name, rgb


@dataclass
class FakeStudio(FakeOpenAI):
    image_mode: str = "ok"
    step_s: float = 0.0
    slow_s: float = 30.0
    good_images: int = 0  # with a failing image_mode: how many images pass before it fails
    image_requests: list[dict[str, Any]] = field(default_factory=list)
    admitted: int = 0  # requests that reached the failure check
    textured: bool = False  # images with grain (as heavy as real ones)
    stream_dies: bool = False  # a streamed image's connection closes after its first partial
    took_s: list[float] = field(default_factory=list)  # each image request's time in here

    def app(self) -> Starlette:
        app = super().app()
        app.router.routes.append(
            Route("/v1/images/generations", self.generations, methods=["POST"])
        )
        app.router.routes.append(Route("/took", self.took, methods=["POST"]))
        return app

    async def took(self, request: Request) -> Response:
        """The time each image request took in here, in seconds, since the last ask (for a
        benchmark running this fake in a process of its own)."""
        took, self.took_s = self.took_s, []
        return JSONResponse(took)

    async def generations(self, request: Request) -> Response:
        """An image request, timed from its arrival to its answer's last byte handed to the
        connection (`took_s`): all of it is the provider's time, sending included."""
        started = time.perf_counter()
        response = await self._generations(request)
        took = self.took_s

        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            async def sending(message: Message) -> None:
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    took.append(time.perf_counter() - started)

            await answer(scope, receive, sending)

        answer = response
        return timed  # type: ignore[return-value]

    async def _generations(self, request: Request) -> Response:
        body = await request.json()
        self.image_requests.append(body)
        if "size" in body:  # OpenAI's shape
            width, height = (int(x) for x in str(body["size"]).split("x"))
            count, kind, seed = int(body.get("n", 1)), "png", 0
        else:
            width, height = int(body.get("width", 512)), int(body.get("height", 512))
            count, kind = 1, str(body.get("response_extension", "png"))
            seed = int(body.get("seed", -1))
        steps = int(body.get("num_inference_steps", 4))
        failed = await self._fail(steps, count)
        if failed is not None:
            return failed
        made = self._images(body["prompt"], seed, count, width, height, kind)
        if body.get("stream"):
            return StreamingResponse(
                self._partials(made, int(body.get("partial_images", 0))),
                media_type="text/event-stream",
            )
        items = [{"b64_json": b64} for b64 in made]
        return self._answer({"id": "img-fake", "created": 0, "data": items})

    async def _partials(self, made: list[str], partials: int) -> AsyncIterator[bytes]:
        """OpenAI's streamed image: blurry partial images, then the image (`die`: the connection
        closes after the first partial)."""
        [b64] = made
        with Image.open(io.BytesIO(base64.b64decode(b64))) as final:
            for index in range(partials):
                await asyncio.sleep(self.step_s)
                rough = final.reduce(8).resize(final.size)
                out = io.BytesIO()
                rough.save(out, "PNG")
                event = {"type": "image_generation.partial_image", "partial_image_index": index,
                         "b64_json": base64.b64encode(out.getvalue()).decode()}  # fmt: skip
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
                if self.stream_dies:
                    raise ConnectionResetError("the fake image server died mid-stream")
        await asyncio.sleep(self.step_s)
        done = {"type": "image_generation.completed", "b64_json": b64,
                "usage": {"input_tokens": 10, "output_tokens": 1056}}  # fmt: skip
        yield f"event: {done['type']}\ndata: {json.dumps(done)}\n\n".encode()

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        if "image" in (body.get("modalities") or []):
            self.image_requests.append(body)
            failed = await self._fail(1, 1)
            if failed is not None:
                return failed
            urls = [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}}
                for b64 in self._images(
                    body["messages"][-1]["content"], int(body.get("seed", 0)), 1, 1024, 1024, "png"
                )
            ]
            message = {"role": "assistant", "content": "Here it is.", "images": urls}
            return self._answer(
                {"id": "chatcmpl-img", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
            )  # fmt: skip
        seen = [
            p for m in body["messages"] if isinstance(m.get("content"), list) for p in m["content"]
        ]
        pictures = [p for p in seen if p.get("type") == "image_url"]
        if not pictures:
            return await self._chat(request, body)
        self.requests.append(body)
        said, image_tokens = [], 0
        for part in pictures:
            raw = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            with Image.open(io.BytesIO(raw)) as image:
                name, rgb = colour_of(image)
                w, h = image.size
            image_tokens += 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)
            said.append(
                f"The image is {w}x{h}; its dominant colour is {name} (#{bytes(rgb).hex()})."
            )
        text = " ".join(p.get("text", "") for p in seen if p.get("type") == "text")
        words = [w + " " for w in " ".join(said).split(" ")]
        words[-1] = words[-1].rstrip()
        prompt_tokens = len(text.split()) + image_tokens
        return StreamingResponse(
            self._stream(body, words, prompt_tokens), media_type="text/event-stream"
        )

    async def _chat(self, request: Request, body: dict[str, Any]) -> Response:
        """A plain chat request: the parent's answer (it reads the body again)."""

        async def again() -> dict[str, Any]:
            return body

        request.json = again  # type: ignore[method-assign]
        return await super().completions(request)

    def _images(
        self, prompt: str, seed: int, count: int, width: int, height: int, kind: str
    ) -> list[str]:
        if self.image_mode == "fewer" and count > 1:
            count -= 1
        return [
            base64.b64encode(
                picture(prompt, seed, index, width, height, kind, self.textured)
            ).decode()
            for index in range(count)
        ]

    async def _fail(self, steps: int, count: int) -> Response | None:
        """The failure `image_mode` asks for (None: answer well), after the time the steps take."""
        if self.step_s:
            await asyncio.sleep(self.step_s * steps)
        mode = self.image_mode
        if mode == "ok":
            return None
        self.admitted += 1
        if self.admitted <= self.good_images:
            return None
        if mode == "fewer":  # several asked: _images sends one fewer; one asked: none
            return None if count > 1 else JSONResponse({"data": []})
        if mode in ("422", "429", "500"):
            detail = {
                "422": "width must be a multiple of 64",
                "429": "rate limited",
                "500": "boom",
            }[mode]
            return JSONResponse({"detail": detail}, status_code=int(mode))
        if mode == "slow":
            await asyncio.sleep(self.slow_s)
            return None
        if mode == "broken":
            return JSONResponse({"data": [{"b64_json": "not//base64!!"}]})
        if mode == "truncated":
            whole = picture("cut", 0, 0, 256, 256, "png")
            return JSONResponse(
                {"data": [{"b64_json": base64.b64encode(whole[: len(whole) // 2]).decode()}]}
            )
        if mode == "cut-jpeg":  # whole to a glance (its header), but its pixels stop short
            whole = picture("cut", 0, 0, 256, 256, "jpg", textured=True)
            return JSONResponse(
                {"data": [{"b64_json": base64.b64encode(whole[: len(whole) // 2]).decode()}]}
            )
        if mode == "die":
            return StreamingResponse(_dying(), media_type="application/json")
        raise AssertionError(f"unknown image_mode {mode!r}")

    @staticmethod
    def _answer(payload: dict[str, Any]) -> Response:
        return Response(json.dumps(payload), media_type="application/json")


async def _dying() -> AsyncIterator[bytes]:
    yield b'{"data": [{"b64_json": "iVBORw0KGgo'
    raise ConnectionResetError("the fake image server died mid-answer")


def main() -> None:
    """Serve in the foreground, for benchmarks (the provider must not share a process with the
    load): `python -m tests.fakes.image_server --port 8012 --textured`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--textured", action="store_true", help="images as heavy as real ones")
    args = parser.parse_args()
    fake = FakeStudio(textured=args.textured)
    uvicorn.run(fake.app(), host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()

"""Generated images: their files, their thumbnails and who they belong to.

An image is a row in `images` (its owner, the work that made it, what it shows, the SHA-256 of its
two files) and two files in a `Shelf`: the image as the provider made it and a thumbnail made once,
here, with Pillow. `keep` stores the image and records it; its thumbnail is made beside, off the
person's path and on threads of low priority (`thumbnail_soon`: decoding a large PNG takes longer
than all else around an image). Asked for before it is done, the request waits for that one; lost
in a restart, it is made when first served.

The shelf is a folder under the data directory by default (`Folder`), or an S3-compatible bucket
(`storage/bucket.py`, IMAGES_S3_*). `fetch` gives a file to its owner only: an image of someone
else, or one that does not exist, is the same `None`, so ids cannot be probed; a file changed or
lost behind the app's back is `None` too (and logged), never served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import logging
import os
import secrets
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from PIL import Image
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

THUMB_SIDE = 384  # pixels, the longer side of a thumbnail
THUMB_TYPE = "image/jpeg"
ID_BYTES = 16

metadata = MetaData()
images = Table(
    "images",
    metadata,
    Column("id", Text, primary_key=True),
    Column("owner", Text, nullable=False),
    Column("thread_id", Text),
    Column("work", Text, nullable=False),  # the transfer id of the work that made it
    Column("model", Text, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("thumb_sha256", Text),  # None until its thumbnail is made
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_images_owner", images.c.owner, images.c.created_at)

Variant = Literal["full", "thumb"]


class Shelf(Protocol):
    """Where image files are kept, by key."""

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes | None:
        """The file's bytes, or None when there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the file, if there is one."""
        ...

    async def close(self) -> None: ...


class Folder:
    """Image files under a directory (`DATA_DIR/images` by default), two levels of fan-out."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    async def get(self, key: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def close(self) -> None:
        return None

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        """Whole or not at all: written aside, flushed, then renamed into place."""
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        with open(aside, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(aside, path)


@dataclass(frozen=True)
class Stored:
    """An image kept: its id and what it is."""

    id: str
    width: int
    height: int
    content_type: str
    prompt: str


@dataclass(frozen=True)
class Made:
    """What the person asked for and what made it, kept beside each image."""

    owner: str
    thread_id: str | None
    work: str
    model: str
    prompt: str


class Unreadable(Exception):
    """An image whose pixels do not decode (it is not kept)."""


def thumbnail(data: bytes) -> bytes:
    """A JPEG of at most `THUMB_SIDE` pixels a side, transparency laid on white: the image's one
    full decode (JPEG: at a reduced scale), which refuses pixels that do not decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))
            image.load()
            factor = max(1, min(image.size) // (THUMB_SIDE * 2))
            small = image.reduce(factor) if factor > 1 else image
            small.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR, reducing_gap=None)
            if small.mode in ("RGBA", "LA", "P", "PA"):
                rgba = small.convert("RGBA")
                small = Image.new("RGB", rgba.size, (255, 255, 255))
                small.paste(rgba, mask=rgba.getchannel("A"))
            out = io.BytesIO()
            small.convert("RGB").save(out, "JPEG", quality=82)
            return out.getvalue()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise Unreadable(str(exc)) from exc


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key(image_id: str, variant: Variant) -> str:
    return f"{image_id}-{variant}"


async def keep(
    engine: AsyncEngine,
    shelf: Shelf,
    made: Made,
    data: bytes,
    content_type: str,
    width: int,
    height: int,
    sha256: str | None = None,
) -> Stored:
    """Store an image, then record it (its SHA-256 given when known: it was computed where the
    image was checked): a row never points at a missing file. Its thumbnail is made soon after
    (`thumbnail_soon`)."""
    image_id = secrets.token_urlsafe(ID_BYTES)
    await shelf.put(_key(image_id, "full"), data, content_type)
    async with engine.begin() as conn:
        await conn.execute(
            insert(images).values(
                id=image_id, owner=made.owner, thread_id=made.thread_id, work=made.work,
                model=made.model, prompt=made.prompt, width=width, height=height,
                content_type=content_type, sha256=sha256 or _digest(data),
                created_at=datetime.now(UTC),
            )
        )  # fmt: skip
    return Stored(image_id, width, height, content_type, made.prompt)


# Thumbnails being made in this process, by image id: held so that they are not collected, and so
# that the page asking for one meanwhile waits for it instead of decoding the image again.
_making: dict[str, asyncio.Task[bytes]] = {}


def _background_priority() -> None:
    """Thumbnail threads yield the CPU to answers: nice 10, on Linux (where a thread has its own
    niceness; elsewhere the call would name a process)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


# Decoding a large PNG takes ~20 ms of CPU: on two cores, at normal priority, it would slow the
# answers and the page updates of everyone else (the image's own included) while it runs.
_thumbnailer = ThreadPoolExecutor(
    max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="thumbnail",
    initializer=_background_priority,
)  # fmt: skip


def thumbnail_soon(engine: AsyncEngine, shelf: Shelf, image_id: str, data: bytes) -> None:
    """Make the thumbnail of a kept image in the background; a failure is logged, and the
    thumbnail is made again when it is first served."""
    _make_once(engine, shelf, image_id, data)


def _make_once(
    engine: AsyncEngine, shelf: Shelf, image_id: str, data: bytes
) -> asyncio.Task[bytes]:
    """The thumbnail of `image_id` being made here: the one in flight, or a new one."""
    task = _making.get(image_id)
    if task is None:
        task = asyncio.create_task(
            make_thumbnail(engine, shelf, image_id, data), name=f"thumbnail {image_id}"
        )
        _making[image_id] = task
        task.add_done_callback(functools.partial(_made, image_id))
    return task


def _made(image_id: str, task: asyncio.Task[bytes]) -> None:
    _making.pop(image_id, None)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("A thumbnail could not be made: %s", error)


async def finish_thumbnails() -> None:
    """Wait for the thumbnails being made (at shutdown)."""
    while _making:
        await asyncio.gather(*list(_making.values()), return_exceptions=True)


async def make_thumbnail(engine: AsyncEngine, shelf: Shelf, image_id: str, data: bytes) -> bytes:
    """The thumbnail of image `image_id` (whose bytes are `data`), stored and recorded once:
    made twice at once (by two replicas), both make the same bytes and the first record stands."""
    thumb = await asyncio.get_running_loop().run_in_executor(_thumbnailer, thumbnail, data)
    await shelf.put(_key(image_id, "thumb"), thumb, THUMB_TYPE)
    async with engine.begin() as conn:
        await conn.execute(
            update(images)
            .where(images.c.id == image_id, images.c.thumb_sha256.is_(None))
            .values(thumb_sha256=_digest(thumb))
        )
    return thumb


@dataclass(frozen=True)
class File:
    """One file of an image, to serve."""

    data: bytes
    content_type: str
    sha256: str
    name: str  # a file name for a download


async def fetch(
    engine: AsyncEngine, shelf: Shelf, image_id: str, owner: str, variant: Variant
) -> File | None:
    """The `variant` file of `owner`'s image `image_id`; None if there is no such image of theirs
    or its file is gone or changed."""
    if len(image_id) > 64:
        return None
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(images).where(images.c.id == image_id, images.c.owner == owner)
            )
        ).first()
    if row is None:
        return None
    if variant == "thumb" and row.thumb_sha256 is None:  # being made, or lost in a restart
        making = _making.get(image_id)
        if making is None:
            full = await shelf.get(_key(image_id, "full"))
            if full is None or _digest(full) != row.sha256:
                log.error(
                    "Image %s is missing or changed since it was stored: not served", image_id
                )
                return None
            making = _make_once(engine, shelf, image_id, full)
        try:
            thumb = await asyncio.shield(making)  # the page that left does not stop it
        except Unreadable:
            log.error("Image %s does not decode: no thumbnail", image_id)
            return None
        return File(thumb, THUMB_TYPE, _digest(thumb), f"image-{image_id[:8]}.jpg")
    data = await shelf.get(_key(image_id, variant))
    expected = row.sha256 if variant == "full" else row.thumb_sha256
    if data is None or _digest(data) != expected:
        log.error(
            "Image %s (%s) is %s: not served", image_id, variant,
            "missing" if data is None else "changed since it was stored",
        )  # fmt: skip
        return None
    content_type = row.content_type if variant == "full" else THUMB_TYPE
    extension = content_type.rsplit("/", 1)[-1].replace("jpeg", "jpg")
    return File(data, content_type, expected, f"image-{image_id[:8]}.{extension}")

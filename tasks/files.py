"""A task's files: given with the task, kept on the shelf where chat files are (a folder or a
bucket every replica reads), and copied into a scratch folder of the run for its tools.

Only text files are taken (the tools read text; Python reads CSV), each at most `MOST_BYTES`, at
most `MOST_FILES`; a file's name is reduced to a plain name, so nothing a person names leads out
of the run's folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from storage.images import Shelf

MOST_FILES = 5
MOST_BYTES = 2 * 2**20
NAME = re.compile(r"[^A-Za-z0-9._-]+")


class FileRefused(ValueError):
    """A file that cannot be given to a task, and why."""


def plain_name(name: str) -> str:
    """`name` as a plain file name: no folders, no leading dot, safe characters only."""
    base = NAME.sub("_", Path(name.replace("\\", "/")).name).lstrip("._")[:100]
    return base or "file.txt"


def check(name: str, data: bytes) -> str:
    """The text of a file given to a task; `FileRefused` for what is not text or too big."""
    if len(data) > MOST_BYTES:
        raise FileRefused(f"{name} is larger than {MOST_BYTES // 2**20} MB.")
    if b"\x00" in data[:8192]:
        raise FileRefused(f"{name} is not a text file (tasks read text, CSV, code...).")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRefused(f"{name} is not UTF-8 text.") from exc


def read_given(path: Path) -> bytes:
    """A file given with a task, as uploaded: at most one byte more than `MOST_BYTES` is read
    (enough for `check` to refuse it), whatever its size."""
    with open(path, "rb") as file:
        return file.read(MOST_BYTES + 1)


def key_of(run_id: str, name: str) -> str:
    return f"task-{run_id}-{hashlib.sha256(name.encode()).hexdigest()[:24]}"


async def keep(shelf: Shelf, run_id: str, given: Sequence[tuple[str, bytes]]) -> list[str]:
    """Keep the files of run `run_id` on the shelf; their names, as the task knows them."""
    if len(given) > MOST_FILES:
        raise FileRefused(f"A task takes at most {MOST_FILES} files.")
    names: list[str] = []
    for name, data in given:
        check(name, data)
        plain = plain_name(name)
        while plain in names:
            plain = f"1_{plain}"
        names.append(plain)
    for plain, (_, data) in zip(names, given, strict=True):
        await shelf.put(key_of(run_id, plain), data, "text/plain")
    return names


async def unpack(shelf: Shelf, run_id: str, names: Sequence[str], scratch: Path) -> Path:
    """The run's files in a fresh folder under `scratch` (what was there from an earlier attempt
    is replaced)."""
    folder = scratch / run_id
    await asyncio.to_thread(shutil.rmtree, folder, True)
    await asyncio.to_thread(folder.mkdir, parents=True)
    for name in names:
        data = await shelf.get(key_of(run_id, name))
        if data is not None:
            await asyncio.to_thread((folder / name).write_bytes, data)
    return folder


async def clear(folder: Path) -> None:
    await asyncio.to_thread(shutil.rmtree, folder, True)

"""The files of a chat's elements (an uploaded photo, a chart, a QR code), kept with its thread.

Chainlit's data layer keeps an element only through a blob storage client; this is ours, on the
same shelf as the generated images (storage/images.py: a folder under the data directory, or an
S3-compatible bucket). A file is kept under a digest of Chainlit's object key (the key holds the
file's name, which the person chose: it never becomes a path), and read back through our own
route, which serves it to the owner of the thread it belongs to only (`owned_file`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from chainlit.data.storage_clients.base import BaseStorageClient
from sqlalchemy import Column, MetaData, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.images import Shelf

ROUTE = "/element-files/"

# The two columns of Chainlit's tables (migrations/versions/0001) that say whose a file is.
_chainlit = MetaData()
elements = Table(
    "elements", _chainlit, Column("id", Text), Column("threadId", Text), Column("objectKey", Text),
    Column("mime", Text), Column("name", Text),
)  # fmt: skip
threads = Table("threads", _chainlit, Column("id", Text), Column("userIdentifier", Text))


def shelf_key(object_key: str) -> str:
    return "element-" + hashlib.sha256(object_key.encode()).hexdigest()


def url_of(object_key: str) -> str:
    return ROUTE + quote(object_key, safe="")


class ElementFiles(BaseStorageClient):
    """Chainlit's storage client over our shelf."""

    def __init__(self, shelf: Shelf) -> None:
        self.shelf = shelf

    async def upload_file(
        self,
        object_key: str,
        data: bytes | str,
        mime: str = "application/octet-stream",
        overwrite: bool = True,
        content_disposition: str | None = None,
    ) -> dict[str, Any]:
        raw = data.encode() if isinstance(data, str) else data
        await self.shelf.put(shelf_key(object_key), raw, mime)
        return {"object_key": object_key, "url": url_of(object_key)}

    async def delete_file(self, object_key: str) -> bool:
        await self.shelf.delete(shelf_key(object_key))
        return True

    async def get_read_url(self, object_key: str) -> str:
        return url_of(object_key)

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class ElementFile:
    data: bytes
    mime: str
    name: str


async def owned_file(
    engine: AsyncEngine, shelf: Shelf, object_key: str, owner: str
) -> ElementFile | None:
    """The file kept under `object_key`, if it belongs to a thread of `owner`; else None."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(elements.c.mime, elements.c.name)
                .join(threads, threads.c.id == elements.c.threadId)
                .where(elements.c.objectKey == object_key, threads.c.userIdentifier == owner)
                .limit(1)
            )
        ).first()
    if row is None:
        return None
    data = await shelf.get(shelf_key(object_key))
    if data is None:
        return None
    return ElementFile(data, row.mime or "application/octet-stream", row.name or "file")

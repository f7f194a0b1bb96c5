"""Chat history: Chainlit's SQLAlchemy data layer, made to work on SQLite as well as PostgreSQL.

Chainlit's layer writes JSON as text and tag lists as arrays, and reads both back raw. On SQLite that
leaves `metadata` a string and makes any tagged thread fail to save; on PostgreSQL (asyncpg) JSONB comes
back as a string too. This subclass encodes parameters for the backend in use and decodes what it reads,
so the UI and the resume path always see dicts and lists.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from chainlit.data.storage_clients.base import BaseStorageClient
from chainlit.element import Element
from chainlit.step import StepDict
from chainlit.types import ThreadDict
from sqlalchemy import TextClause, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

STEP_COLUMNS = frozenset(
    (
        "id", "name", "type", "threadId", "parentId", "command", "modes", "streaming",
        "waitForAnswer", "isError", "metadata", "tags", "input", "output", "createdAt", "start",
        "end", "generation", "showInput", "defaultOpen", "autoCollapse", "language", "icon",
    )
)  # fmt: skip
JSON_FIELDS = ("metadata", "generation", "modes", "props", "playerConfig")
WRITES = frozenset(("INSERT", "UPDATE", "DELETE"))
REMEMBERED = 10_000  # threads known written, and user identifiers, kept (a few MB at most)
# A group of writes commits this long after its first write is queued: what the person sees goes
# first (the page's updates, the badge: with no wait, history commits took ~8 ms of the event loop
# around each image), and more writes share a commit. Chainlit does not wait for these writes.
WRITE_DELAY_S = 0.05

log = logging.getLogger(__name__)


@lru_cache(maxsize=256)
def _statement(query: str) -> TextClause:
    """Chainlit's statements repeat: parse each once (and let SQLAlchemy cache its compilation)."""
    return text(query)


class ChatHistory(SQLAlchemyDataLayer):
    """Chainlit data layer over our engine (SQLite or PostgreSQL)."""

    def __init__(
        self,
        engine: AsyncEngine,
        live_authors: frozenset[str] = frozenset(),
        forget: Callable[[str], Awaitable[None]] | None = None,
        max_message_chars: int | None = None,
        files: BaseStorageClient | None = None,
    ) -> None:
        """`live_authors`: messages by these authors are notices of the moment (a balance, a
        shortfall), not conversation: they are shown but not kept with the thread. `forget`
        deletes what else is kept of a thread when it is deleted (the model's memory of it).
        `max_message_chars`: a person's message longer than this is not kept (the chat refuses
        it), nor does it name the thread: Chainlit stores a message before the app sees it.
        `files`: where the files of elements are kept (an uploaded photo, a chart); without it
        they are shown but not kept."""
        super().__init__(
            conninfo=engine.url.render_as_string(hide_password=False), storage_provider=files
        )
        self.live_authors = live_authors
        self.forget = forget
        self.max_message_chars = max_message_chars
        # Replace the engine Chainlit made with ours (pragmas, pool settings); it never connected.
        # execute_sql below no longer opens sessions; this is for any Chainlit method that does.
        self.engine = engine
        self.async_session = async_sessionmaker(
            bind=engine, expire_on_commit=False, class_=AsyncSession
        )
        self._sqlite = engine.dialect.name == "sqlite"
        # Threads this process has written, newest last.
        self._threads: OrderedDict[str, None] = OrderedDict()
        self._identifiers: dict[str, str] = {}  # user id -> identifier
        self._not_kept: OrderedDict[str, None] = OrderedDict()  # ids of live notices, newest last
        # Writes waiting for the next group commit, the latest one's outcome, the committing task.
        self._writes: list[tuple[str, dict[str, Any], asyncio.Future[int | None]]] = []
        self._last_write: asyncio.Future[int | None] | None = None
        self._committer: asyncio.Task[None] | None = None
        self.write_delay_s = WRITE_DELAY_S

    async def get_current_timestamp(self) -> str:
        return datetime.now(UTC).replace(tzinfo=None).isoformat() + "Z"

    async def execute_sql(self, query: str, parameters: dict) -> Any:
        """Chainlit's statement, on a plain connection rather than an ORM session per statement.

        Writes are committed in groups, `WRITE_DELAY_S` after the first: every write queued
        meanwhile, or while the previous group commits, goes in (the caller still waits for its
        own). With a transaction each, a turn's history (a new thread and three steps, 200 turns
        at once) cost 5.1 ms of CPU; in groups, 3.0. A read first waits for the writes queued
        before it, so it sees them (a read just after a write waits up to `WRITE_DELAY_S` more)."""
        encoded = {k: self._encode(v) for k, v in parameters.items()}
        if query.lstrip()[:6].upper() in WRITES:
            return await self._queue_write(query, encoded)
        if self._last_write is not None and not self._last_write.done():
            await asyncio.wait([self._last_write])  # its outcome is for its own caller
        try:
            async with self.engine.begin() as conn:
                result = await conn.execute(_statement(query), encoded)
                rows = [dict(row._mapping) for row in result.fetchall()]
        except SQLAlchemyError as error:
            log.warning("Chat history statement failed: %s", error)
            return None
        return self.clean_result(rows)

    async def _queue_write(self, query: str, parameters: dict[str, Any]) -> int | None:
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._writes.append((query, parameters, done))
        self._last_write = done
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_writes())
        # Shielded: a caller cancelled while it waits leaves the write, and the reads that wait
        # for it, to go on.
        return await asyncio.shield(done)

    async def _commit_writes(self) -> None:
        group: list[tuple[str, dict[str, Any], asyncio.Future[int | None]]] = []
        try:
            await asyncio.sleep(self.write_delay_s)
            while self._writes:
                group, self._writes = self._writes, []
                counts = await self._run_writes([(q, p) for q, p, _ in group])
                for (_, _, done), count in zip(group, counts, strict=True):
                    if not done.done():
                        done.set_result(count)
                group = []
        except BaseException as error:
            # Cancelled at shutdown, or something no statement error explains: no caller (and no
            # read behind them) is left waiting for an outcome that will not come.
            for _, _, done in group + self._writes:
                _fail(done, error)
            self._writes = []
            raise

    async def flush(self) -> None:
        """Wait for the writes queued so far to commit; later ones commit at once (at shutdown)."""
        self.write_delay_s = 0
        if self._committer is not None and not self._committer.done():
            await asyncio.wait([self._committer])

    async def close(self) -> None:
        await self.flush()
        await super().close()

    async def _run_writes(self, group: list[tuple[str, dict[str, Any]]]) -> list[int | None]:
        """Row counts of a group of writes in one transaction; when one fails, each is run on its
        own, so only the failing one is lost (and logged)."""
        try:
            async with self.engine.begin() as conn:
                return [(await conn.execute(_statement(q), p)).rowcount for q, p in group]
        except SQLAlchemyError as error:
            if len(group) == 1:
                log.warning("Chat history statement failed: %s", error)
                return [None]
        return [(await self._run_writes([write]))[0] for write in group]

    def _encode(self, value: Any) -> Any:
        if isinstance(value, dict) or (self._sqlite and isinstance(value, list)):
            return json.dumps(value)
        return value

    async def update_thread(
        self,
        thread_id: str,
        name: str | None = None,
        user_id: str | None = None,
        metadata: dict | None = None,
        tags: list[str] | None = None,
    ) -> None:
        """Chainlit calls this with nothing to change before every step it writes, to create the
        thread if it is missing: a SELECT in a transaction of its own, three or four a turn. A
        thread this process has written needs no look. (Should another process delete it
        meanwhile, a step written after fails and is logged, rather than bringing it back.)"""
        unchanged = name is None and user_id is None and metadata is None and tags is None
        if unchanged and thread_id in self._threads:
            return
        if name is not None and self.max_message_chars and len(name) > self.max_message_chars:
            name = None  # named after a message too long to keep: it stays unnamed
        await super().update_thread(thread_id, name, user_id, metadata, tags)
        self._threads[thread_id] = None
        self._threads.move_to_end(thread_id)
        if len(self._threads) > REMEMBERED:
            self._threads.popitem(last=False)

    async def _get_user_identifer_by_id(self, user_id: str) -> str:
        """A user's identifier never changes: looked up once (Chainlit asks at every new chat)."""
        known = self._identifiers.get(user_id)
        if known is None:
            known = await super()._get_user_identifer_by_id(user_id)
            if len(self._identifiers) >= REMEMBERED:
                self._identifiers.clear()
            self._identifiers[user_id] = known
        return known

    async def delete_thread(self, thread_id: str) -> None:
        self._threads.pop(thread_id, None)
        await super().delete_thread(thread_id)
        if self.forget is not None:
            await self.forget(thread_id)

    async def create_element(self, element: Element) -> None:
        """Custom elements (the credit badge) are live state, not history: they are not kept. Nor
        are the elements of a notice that is not kept (a chart under /usage), nor files, charts
        and images while no blob storage is configured to hold them (Chainlit would only log a
        warning for each)."""
        if element.type == "custom" or self.storage_provider is None:
            return
        if element.for_id in self._not_kept:
            return
        await super().create_element(element)

    async def create_step(self, step_dict: StepDict) -> None:
        if step_dict.get("name") in self.live_authors:
            # Its elements come next (Chainlit creates them after it): they go with it.
            self._not_kept[str(step_dict.get("id"))] = None
            while len(self._not_kept) > 10_000:
                self._not_kept.popitem(last=False)
            return
        if self._too_long(step_dict):
            return
        known = {k: v for k, v in step_dict.items() if k in STEP_COLUMNS}
        await super().create_step(known)

    async def update_step(self, step_dict: StepDict) -> None:
        if self._too_long(step_dict):  # an edit to a message too long to keep
            return
        await super().update_step(step_dict)

    def _too_long(self, step_dict: StepDict) -> bool:
        limit = self.max_message_chars
        text = step_dict.get("output") or ""
        return limit is not None and step_dict.get("type") == "user_message" and len(text) > limit

    async def get_all_user_threads(
        self, user_id: str | None = None, thread_id: str | None = None
    ) -> list[ThreadDict] | None:
        threads = await super().get_all_user_threads(user_id=user_id, thread_id=thread_id)
        for thread in threads or []:
            _decode(thread)
            for step in thread.get("steps", []):
                _decode(step)
            for element in thread.get("elements", []) or []:
                _decode(element)
        return threads

    async def get_step(self, step_id: str) -> StepDict | None:
        step = await super().get_step(step_id)
        if step is not None:
            _decode(step)
        return step


def _fail(done: asyncio.Future[int | None], error: BaseException) -> None:
    if done.done():
        return
    if isinstance(error, asyncio.CancelledError):
        done.cancel()
    else:
        done.set_exception(error)


def _decode(row: Any) -> None:
    """Turn JSON text back into objects, in place."""
    for key in JSON_FIELDS:
        value = row.get(key)
        if isinstance(value, str):
            try:
                row[key] = json.loads(value) if value else {}
            except json.JSONDecodeError:
                row[key] = {}
    tags = row.get("tags")
    if isinstance(tags, str):
        try:
            row["tags"] = json.loads(tags)
        except json.JSONDecodeError:
            row["tags"] = [tags]

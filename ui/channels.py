"""Channels that carry live updates to every replica (ui/live.py): this process alone, PostgreSQL
LISTEN/NOTIFY, or Redis pub/sub. Each delivers what any replica publishes to every listener,
itself included; `listen` returns or raises when its connection is lost (the caller listens again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import asyncpg
from redis import asyncio as aioredis
from sqlalchemy.engine import make_url

NAME = "creditchat_live"
Deliver = Callable[[str], Coroutine[Any, Any, None]]
Heard = Callable[[], None]  # called once the channel is listening


class Channel(Protocol):
    kind: str  # what carries the news, for the health check

    async def publish(self, text: str) -> None: ...

    async def listen(self, deliver: Deliver, heard: Heard) -> None: ...

    async def close(self) -> None: ...


class InProcess:
    """One process: what is published is delivered here, at once."""

    kind = "this process"

    def __init__(self) -> None:
        self._deliver: Deliver | None = None

    async def publish(self, text: str) -> None:
        if self._deliver is not None:
            await self._deliver(text)

    async def listen(self, deliver: Deliver, heard: Heard) -> None:
        self._deliver = deliver
        heard()
        await asyncio.Event().wait()  # until cancelled

    async def close(self) -> None:
        self._deliver = None


class Postgres:
    """PostgreSQL LISTEN/NOTIFY: one listening connection, a small pool to notify from."""

    kind = "PostgreSQL LISTEN/NOTIFY"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def publish(self, text: str) -> None:
        async with self._opening:  # one pool, however many publish at first
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2)
        await self._pool.execute("SELECT pg_notify($1, $2)", NAME, text)

    async def listen(self, deliver: Deliver, heard: Heard) -> None:
        conn = await asyncpg.connect(self.dsn)
        lost = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            task = asyncio.create_task(deliver(payload))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(NAME, notified)
            heard()
            while not lost.is_set() and not conn.is_closed():
                try:  # a connection cut without a goodbye is found by asking
                    await asyncio.wait_for(lost.wait(), timeout=15)
                except TimeoutError:
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout=5)
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)
            conn.terminate()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


class Redis:
    """Redis pub/sub (REDIS_URL)."""

    kind = "Redis pub/sub"

    def __init__(self, url: str) -> None:
        self.client = aioredis.from_url(url)

    async def publish(self, text: str) -> None:
        await self.client.publish(NAME, text)

    async def listen(self, deliver: Deliver, heard: Heard) -> None:
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(NAME)
            heard()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    data = message["data"]
                    await deliver(data.decode() if isinstance(data, bytes) else str(data))
        finally:
            await pubsub.aclose()

    async def close(self) -> None:
        await self.client.aclose()


def chosen(redis_url: str | None, database_url: str) -> Channel:
    """Redis when it is configured, else PostgreSQL when the database is, else this process."""
    if redis_url:
        return Redis(redis_url)
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return Postgres(url.set(drivername="postgresql").render_as_string(hide_password=False))
    return InProcess()

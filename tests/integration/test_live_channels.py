"""The channels between replicas, against the real servers: what one replica tells, every listener
hears; a listener whose connection is cut (a database or Redis restart, a failover) listens again
by itself and hears what is told afterwards."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis import asyncio as aioredis
from sqlalchemy.engine import make_url

from ui.channels import Channel, Postgres, Redis
from ui.live import Live, News

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Listening(Live):
    """A replica's listener that records what it hears (no chat sessions here)."""

    def __init__(self, channel: Channel) -> None:
        async def nothing(news: News) -> None:
            return None

        super().__init__(channel, nothing, first_pause_s=0.05)
        self.heard: asyncio.Queue[News | None] = asyncio.Queue()
        self.listens: asyncio.Queue[int] = asyncio.Queue()  # one item each time it listens
        self.count = 0

    async def _deliver(self, text: str) -> None:
        await self.heard.put(News.decode(text))

    def _heard(self) -> None:
        super()._heard()
        self.count += 1
        self.listens.put_nowait(self.count)


@pytest.fixture(params=["postgres", "redis"])
async def channel_pair(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Channel, Channel, str]]:
    """Two replicas' channels to one server, and the server's address."""
    if request.param == "redis":
        yield Redis(REDIS_URL), Redis(REDIS_URL), REDIS_URL
        return
    url = make_url(request.getfixturevalue("fresh_postgres_url"))
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    yield Postgres(dsn), Postgres(dsn), dsn


async def cut_listeners(address: str) -> None:
    """End every listening connection from the server's side."""
    if address.startswith("redis"):
        client = aioredis.from_url(address)
        await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await client.aclose()
        return
    conn = await asyncpg.connect(address)
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'"
    )
    await conn.close()


async def test_a_replica_hears_the_other_even_after_its_connection_is_cut(
    channel_pair: tuple[Channel, Channel, str],
) -> None:
    first_channel, second_channel, address = channel_pair
    first, second = Listening(first_channel), Listening(second_channel)
    first.start()
    assert await asyncio.wait_for(first.listens.get(), timeout=10) == 1
    await second.tell("ann@example.com", "An administrator granted you 5 credits.")
    heard = await asyncio.wait_for(first.heard.get(), timeout=10)
    assert heard == News("ann@example.com", "An administrator granted you 5 credits.")

    await cut_listeners(address)
    # The cut is noticed, and the listener is back by itself.
    assert await asyncio.wait_for(first.listens.get(), timeout=30) == 2
    await second.tell("bob@example.com")
    assert await asyncio.wait_for(first.heard.get(), timeout=10) == News("bob@example.com")
    await first.close()
    await second.close()

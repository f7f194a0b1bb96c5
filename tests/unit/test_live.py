"""The live-update listener is supervised: a channel that fails is listened to again, with a
growing pause, and telling never fails the one who tells. A session's updates are drawn one at a
time, in the order they were told, so the last drawn is the last told."""

from __future__ import annotations

import asyncio
from typing import Any

from chainlit.session import WebsocketSession

from ui.channels import Deliver, Heard, InProcess
from ui.live import Live, News


class Flaky(InProcess):
    """Fails to listen `failures` times (a server restarting), then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0
        self.works = asyncio.Event()

    async def listen(self, deliver: Deliver, heard: Heard) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("connection refused")

        def listening() -> None:
            heard()
            self.works.set()

        await super().listen(deliver, listening)


class Broken(InProcess):
    async def publish(self, text: str) -> None:
        raise ConnectionError("connection refused")


async def nothing(news: News) -> None:
    return None


async def test_a_listener_that_fails_listens_again() -> None:
    channel = Flaky(failures=3)
    live = Live(channel, nothing, first_pause_s=0.01)
    live.start()
    await asyncio.wait_for(channel.works.wait(), timeout=5)
    assert live.listening and channel.attempts == 4
    await live.close()


async def test_telling_never_fails_the_teller() -> None:
    live = Live(Broken(), nothing)
    await live.tell("ann@example.com", "An administrator granted you 5 credits.")


def test_news_travels_as_json_and_malformed_news_is_dropped() -> None:
    news = News("ann@example.com", "An administrator granted you 5 credits.")
    assert News.decode(news.encode()) == news
    assert News.decode("not json") is None
    assert News.decode('{"toast": "no person"}') is None
    assert News.decode("[1, 2]") is None


def a_session(session_id: str) -> WebsocketSession:
    def emit(event: str, data: Any) -> None:
        return None

    async def emit_call(kind: Any, data: Any, timeout: Any) -> None:
        return None

    return WebsocketSession(session_id, f"sid-{session_id}", emit, emit_call, {}, "webapp")


async def test_a_sessions_updates_are_drawn_one_at_a_time_in_the_order_told() -> None:
    """Each drawing reads the task's state, then sends it: two drawing at once could send the
    older state last (a task's page left showing it running after it ended)."""
    drawn: list[str] = []
    first_reading = asyncio.Event()
    go_on = asyncio.Event()

    async def draw(news: News) -> None:
        drawn.append(f"read {news.task}")
        if news.task == "r1":
            first_reading.set()
            await go_on.wait()  # its read is slow
        drawn.append(f"sent {news.task}")

    session = a_session("s1")
    channel = Flaky(failures=0)
    live = Live(channel, draw)
    live.join("ann@example.com", session.id)
    live.start()
    try:
        await asyncio.wait_for(channel.works.wait(), 5)
        await live.tell("ann@example.com", kind="task", task="r1")
        await asyncio.wait_for(first_reading.wait(), 5)
        await live.tell("ann@example.com", kind="task", task="r2")
        await asyncio.sleep(0.05)
        go_on.set()
    finally:
        await asyncio.wait_for(live.close(), 5)  # once every drawing has ended
        await session.delete()
    assert drawn == ["read r1", "sent r1", "read r2", "sent r2"]

"""The live-update listener is supervised: a channel that fails is listened to again, with a
growing pause, and telling never fails the one who tells."""

from __future__ import annotations

import asyncio

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

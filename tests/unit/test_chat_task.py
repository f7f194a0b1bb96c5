"""Work started by a socket event (an edit's answer, images after their confirmation) runs as the
chat's task: the page is told it started and, however it ends (done, failed, Stop pressed at any
moment, even while the page is being told it started), that it ended."""

from __future__ import annotations

import asyncio

from chainlit.context import ChainlitContext, context_var
from chainlit.emitter import BaseChainlitEmitter
from chainlit.session import HTTPSession

from ui import chat_task


class Page(BaseChainlitEmitter):
    """What the page is told about the chat's task; telling it that the task started takes until
    `told` is set."""

    def __init__(self, session: HTTPSession) -> None:
        super().__init__(session)
        self.said: list[str] = []
        self.telling = asyncio.Event()
        self.told = asyncio.Event()

    async def task_start(self) -> None:
        self.said.append("start")
        self.telling.set()
        await self.told.wait()

    async def task_end(self) -> None:
        self.said.append("end")


def a_page() -> Page:
    page = Page(HTTPSession("s1", "webapp"))
    context_var.set(ChainlitContext(page.session, page))
    return page


async def test_stop_pressed_while_the_page_is_told_the_task_started_still_ends_it() -> None:
    page = a_page()
    worked: list[str] = []

    async def work() -> None:
        worked.append("ran")

    running = asyncio.create_task(chat_task.shown_running(work(), "work"))
    await asyncio.wait_for(page.telling.wait(), 5)
    running.cancel()  # Stop
    await asyncio.gather(running, return_exceptions=True)
    assert page.said == ["start", "end"]
    assert worked == []

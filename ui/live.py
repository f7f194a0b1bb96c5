"""Updates to a person's open chats from outside them: an administrator's grant, a payment's
webhook or return page, a reconciliation, a long task's progress.

Each replica keeps which of its open chat sessions belong to whom. `Live.tell(person)` reaches every
replica through a channel: Redis pub/sub when REDIS_URL is set, PostgreSQL LISTEN/NOTIFY when the
database is PostgreSQL, this process alone otherwise (one process on SQLite). Each replica then
refreshes the badge of that person's sessions it holds, and shows the toast if there is one; a
task's news shows the task again where its chat is open. A session's news is drawn in turn with
its socket events (ui/turnstile.py), so the last told is the last drawn. Every replica also hears
every piece of news (`heard`, whether or not it holds the person's sessions): credits arriving
wake the person's paused tasks, a cancelled task stops on the replica that runs it.

The listener is supervised: when its connection drops or it fails, that is logged and it listens
again after a pause (1 s, doubling up to 30 s). What is told while a replica is not listening is
missed there; the badge is a view of the ledger and is refreshed again at the person's next answer.
Telling never fails the caller: a grant is done whether or not anyone could be told.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from chainlit.context import init_ws_context
from chainlit.session import WebsocketSession

from agents.providers import Health
from ui import turnstile
from ui.channels import Channel

log = logging.getLogger("live")
MAX_PAUSE_S = 30.0


Kind = Literal["balance", "task", "cancel"]


@dataclass(frozen=True)
class News:
    """Something that changed for a person, told to every replica: their balance (credits
    arrived or were taken back), a task's progress, or a task cancelled (`task`: its run)."""

    person: str
    toast: str = ""
    message: str = ""  # said in the chat too (what a payment credited), when not empty
    kind: Kind = "balance"
    task: str = ""

    def encode(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, text: str) -> News | None:
        try:
            found = json.loads(text)
            kind = str(found.get("kind", "balance"))
            if kind not in ("balance", "task", "cancel"):
                return None
            return cls(
                str(found["person"]), str(found.get("toast", "")), str(found.get("message", "")),
                cast(Kind, kind), str(found.get("task", "")),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


Refresh = Callable[[News], Awaitable[None]]  # runs in the context of one of the person's sessions
Heard = Callable[[News], Awaitable[None]]  # runs on every replica, in no session


class Live:
    """This replica's open sessions by person, and the channel that tells every replica."""

    def __init__(
        self,
        channel: Channel,
        refresh: Refresh,
        first_pause_s: float = 1.0,
        heard: Heard | None = None,
    ) -> None:
        self.channel = channel
        self.refresh = refresh
        self.heard = heard
        self.first_pause_s = first_pause_s
        self.sessions: dict[str, set[str]] = defaultdict(set)
        self.listening = False
        self._listener: asyncio.Task[None] | None = None
        self._refreshing: set[asyncio.Task[None]] = set()
        self._leaving: set[asyncio.Task[None]] = set()

    def join(self, person: str, session_id: str) -> None:
        """`session_id` is one of `person`'s open chats on this replica."""
        self.sessions[person].add(session_id)

    def leave(self, session_id: str) -> None:
        for person, ids in list(self.sessions.items()):
            ids.discard(session_id)
            if not ids:
                del self.sessions[person]

    def leave_when_gone(self, session_id: str, after_s: float) -> None:
        """The socket of `session_id` closed: Chainlit keeps the session `after_s` for the browser
        to reconnect (under the same id, without a new chat start); forget it only if it did not."""

        async def later() -> None:
            await asyncio.sleep(after_s)
            if WebsocketSession.get_by_id(session_id) is None:
                self.leave(session_id)

        task = asyncio.create_task(later())
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def tell(
        self,
        person: str,
        toast: str = "",
        message: str = "",
        kind: Kind = "balance",
        task: str = "",
    ) -> None:
        """Tell every replica that `person`'s balance changed (or their task, `kind` says)."""
        try:
            await self.channel.publish(News(person, toast, message, kind, task).encode())
        except Exception:
            log.exception("Could not tell the replicas about %s", person)

    def health(self) -> Health:
        """Whether this replica hears what the others tell, and through what."""
        if self.listening:
            return Health(True, self.channel.kind)
        return Health(False, f"not listening to {self.channel.kind}: trying again")

    def start(self) -> None:
        self._listener = asyncio.create_task(self._listen_forever(), name="live-listener")

    async def close(self) -> None:
        stopping = [*self._leaving, *([self._listener] if self._listener else [])]
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        await asyncio.gather(*self._refreshing, return_exceptions=True)
        await self.channel.close()

    async def _listen_forever(self) -> None:
        pause = self.first_pause_s
        while True:  # supervised: whatever ends the listening, it starts again
            failure: BaseException | None = None
            try:
                await self.channel.listen(self._deliver, self._heard)
            except Exception as error:
                failure = error
            if self.listening:  # it had been working: try again soon
                pause = self.first_pause_s
            self.listening = False
            log.warning(
                "The live-update channel %s; listening again in %.1f s",
                "failed" if failure else "closed", pause, exc_info=failure,
            )  # fmt: skip
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_S)

    def _heard(self) -> None:
        """The channel is listening."""
        self.listening = True

    async def _deliver(self, text: str) -> None:
        news = News.decode(text)
        if news is None:
            log.warning("Ignored a malformed live update: %.200r", text)
            return
        if self.heard is not None:
            self._spawn(self._hear(news))
        for session_id in list(self.sessions.get(news.person, ())):
            session = WebsocketSession.get_by_id(session_id)
            if session is None:  # closed without saying so
                self.leave(session_id)
                continue
            self._spawn(self._refresh(session, news))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def _hear(self, news: News) -> None:
        assert self.heard is not None
        try:
            await self.heard(news)
        except Exception:
            log.exception("Could not act on news for %s", news.person)

    async def _refresh(self, session: WebsocketSession, news: News) -> None:
        init_ws_context(session)  # this task speaks to that session
        try:
            async with turnstile.in_turn(session.socket_id):  # after what the session is doing
                await self.refresh(news)
        except Exception:  # the person may have just left
            log.exception("Could not refresh a session of %s", news.person)

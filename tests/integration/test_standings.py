"""Account standings as every request and socket.io event checks them, on SQLite and PostgreSQL:
one read of the database per refresh for all accounts, what another replica changed seen after it,
what this one changed seen at once, and a token's signature checked once but its expiry always."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.sessions import Standings, guard_events
from ui import turnstile

SECRET = "a-secret-long-enough-for-hs256-tokens!"


def token(account: str, issued: float, expires: float | None = None) -> str:
    claims: dict[str, object] = {"identifier": account, "iat": int(issued)}
    if expires is not None:
        claims["exp"] = int(expires)
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Statements:
    """Counts the statements that read account standings."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.reads = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "account_standing" in statement:
            self.reads += 1


async def test_many_accounts_checked_at_once_cost_one_read(engine: AsyncEngine) -> None:
    standings = Standings(engine, refresh_s=60)
    await standings.set("banned@example.com", disabled=True)
    counted = Statements(engine)
    now = time.time()
    tokens = [token(f"person{n}@example.com", now) for n in range(200)]
    admitted = await asyncio.gather(*(standings.admits(t, SECRET) for t in tokens))
    assert all(admitted)
    assert not await standings.admits(token("banned@example.com", now), SECRET)
    assert counted.reads == 1


async def test_another_replica_is_heard_after_the_refresh(engine: AsyncEngine) -> None:
    here, there = Standings(engine, refresh_s=0.3), Standings(engine, refresh_s=0.3)
    issued = token("ann@example.com", time.time() - 10)
    assert await here.admits(issued, SECRET)
    await there.set("ann@example.com", end_sessions=True)  # another process signs her out
    assert not await there.admits(issued, SECRET)  # the one that changed it: at once
    await asyncio.sleep(0.35)
    assert not await here.admits(issued, SECRET)
    signed_in_again = token("ann@example.com", time.time())  # the second she was signed out
    assert await here.account_of(signed_in_again, SECRET) == "ann@example.com"
    await there.set("ann@example.com", disabled=True)
    await asyncio.sleep(0.35)
    assert (await here.of("ann@example.com")).disabled
    assert await here.account_of(signed_in_again, SECRET) is None
    await there.set("ann@example.com", disabled=False)
    await asyncio.sleep(0.35)
    assert await here.account_of(signed_in_again, SECRET) == "ann@example.com"


async def test_a_checked_token_still_expires(engine: AsyncEngine) -> None:
    standings = Standings(engine)
    expires = int(time.time()) + 2  # whole seconds, as in a JWT: 1-2 s from now
    soon = token("ann@example.com", time.time(), expires=expires)
    assert await standings.account_of(soon, SECRET) == "ann@example.com"
    await asyncio.sleep(expires - time.time() + 0.05)
    assert await standings.account_of(soon, SECRET) is None


async def test_a_check_cancelled_mid_read_leaves_the_read_to_the_others(
    engine: AsyncEngine,
) -> None:
    """A check whose caller goes away (a closed tab) while the standings are read does not stop
    the read that the checks after it are waiting for."""
    standings = Standings(engine, refresh_s=60)
    await standings.set("banned@example.com", disabled=True)
    counted = Statements(engine)
    now = time.time()
    first = asyncio.ensure_future(standings.admits(token("ann@example.com", now), SECRET))
    await asyncio.sleep(0)
    reading = standings._reading
    assert reading is not None and not reading.done()  # the read is in flight
    first.cancel()
    assert not await standings.admits(token("banned@example.com", now), SECRET)
    assert first.cancelled() and reading.done() and not reading.cancelled()
    assert counted.reads == 1


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-token",
        jwt.encode(
            {"identifier": "ann@example.com", "iat": 1},
            "another-secret-that-is-long-enough-too",
            "HS256",
        ),
        jwt.encode({"iat": 1}, SECRET, "HS256"),
    ],
)
async def test_a_token_that_is_not_ours_names_no_account(engine: AsyncEngine, bad: str) -> None:
    standings = Standings(engine)
    assert await standings.account_of(bad, SECRET) is None
    assert await standings.admits(bad, SECRET)  # Chainlit's to refuse (see `admits`)


async def test_a_token_checked_under_one_secret_is_not_taken_under_another(
    engine: AsyncEngine,
) -> None:
    standings = Standings(engine)
    signed = token("ann@example.com", time.time())
    assert await standings.account_of(signed, SECRET) == "ann@example.com"
    assert await standings.account_of(signed, "another-secret-that-is-long-enough-too") is None


class ReadEndingWith(Standings):
    """Standings whose next read ends as `arrives` is called: a socket.io event that comes in
    just as the database answers (its task starts before those waiting for the read wake)."""

    arrives: Callable[[], None] | None = None

    async def _read_all(self) -> None:
        await super()._read_all()
        if self.arrives is not None:
            self.arrives()
            self.arrives = None


def guard_for_ann(handlers: dict[str, Any], standings: Standings) -> None:
    """`handlers` guarded as the app guards Chainlit's, for a session of Ann's that counts."""
    signed = token("ann@example.com", time.time())

    async def session_counts(sid: str) -> bool:
        return await standings.admits(signed, SECRET)

    async def end(sid: str) -> None:
        raise AssertionError("the session still counts")

    guard_events(handlers, session_counts, end)
    turnstile.one_at_a_time(handlers)


async def test_a_sessions_events_pass_the_check_in_the_order_they_came(
    engine: AsyncEngine,
) -> None:
    """Send, Stop, send again: the Stop is handled before the second message, even when the
    standings are read between them (else the Stop would cancel the newer turn)."""
    standings = ReadEndingWith(engine, refresh_s=0.2)
    handled: list[str] = []

    async def handler(sid: str, what: str) -> None:
        handled.append(what)

    handlers = {"client_message": handler, "stop": handler}
    guard_for_ann(handlers, standings)
    events: list[asyncio.Task[None]] = []

    def receive(event: str, what: str) -> None:  # as socket.io does: a task per event
        events.append(asyncio.ensure_future(handlers[event]("sid", what)))

    await standings.of("ann@example.com")  # read: the next checks need none
    receive("client_message", "first question")
    await asyncio.sleep(0.25)  # the refresh is due: the Stop's check reads
    assert handled == ["first question"]
    standings.arrives = lambda: receive("client_message", "second question")
    receive("stop", "stop")
    await asyncio.gather(*events)
    assert handled == ["first question", "stop", "second question"]


async def test_a_stop_that_waits_before_it_cancels_still_stops_its_own_turn(
    engine: AsyncEngine,
) -> None:
    """Chainlit's Stop says "Task manually stopped" before it cancels the session's current
    task: a message sent right after the Stop must not become that task meanwhile."""
    standings = Standings(engine, refresh_s=60)
    current: list[str] = []
    stopped: list[str] = []

    async def message(sid: str, what: str) -> None:  # as Chainlit's: starts the turn, returns
        current.append(what)

    async def stop(sid: str) -> None:
        await asyncio.sleep(0.01)  # sends its message first
        stopped.append(current[-1])

    handlers = {"client_message": message, "stop": stop}
    guard_for_ann(handlers, standings)
    await standings.of("ann@example.com")
    await handlers["client_message"]("sid", "first question")
    pressed = asyncio.ensure_future(handlers["stop"]("sid"))
    sent = asyncio.ensure_future(handlers["client_message"]("sid", "second question"))
    await asyncio.gather(pressed, sent)
    assert stopped == ["first question"]
    assert current == ["first question", "second question"]

"""A chat session's socket events, and what other places draw in it, one at a time, in the order
they came.

socket.io runs each event in a task of its own, and a task's news (ui/live.py) is drawn in a
task of its own too. Two at once interleave at every await: a check of the session's standing
that waits for a read lets the next event's check run first, and Chainlit's Stop sends its
message before it cancels the session's task, so a message sent right after a Stop could become
the task that Stop cancels; two drawings of a task each read its state and then send it, so the
older state could be sent last (a task's page left showing it running after it ended). Through
the turnstile, each passes whole before the next begins. What passes is short: a chat turn runs
in a task its event starts, so waiting for the one before costs a session nothing.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

Handler = Callable[..., Awaitable[Any]]

_turnstiles: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()


@asynccontextmanager
async def in_turn(sid: str) -> AsyncIterator[None]:
    """Pass the turnstile of the session on socket `sid` (first come, first through)."""
    turnstile = _turnstiles.get(sid)
    if turnstile is None:  # kept while something of the session holds it or waits for it
        turnstile = _turnstiles[sid] = asyncio.Lock()
    async with turnstile:
        yield


def one_at_a_time(handlers: dict[str, Handler]) -> None:
    """Wrap every socket.io event handler of an open session (not `connect` and `disconnect`,
    which open and close it) so that it runs through the session's turnstile."""
    for event, handler in list(handlers.items()):
        if event in ("connect", "disconnect"):
            continue

        async def in_order(sid: str, *args: Any, _handler: Handler = handler) -> Any:
            async with in_turn(sid):
                return await _handler(sid, *args)

        handlers[event] = in_order

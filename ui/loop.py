"""The event loop as `chainlit run` drives it, repaired where it differs from asyncio's.

Chainlit's CLI applies nest_asyncio (to let code re-enter a running loop), whose loop never
installs asyncio's async-generator hooks. Without them, an async generator dropped unfinished (a
turn stopped mid-stream leaves its answer's stream behind) is closed by the interpreter on the spot:
its `finally` runs to its first `await` and is abandoned there, holding whatever it took. Seen under
a storm of Stop presses: the model memory's lock was never given back and every later turn waited
on it (tests/integration/test_event_loop.py).

Our own code closes the streams it reads (`contextlib.aclosing`); this is for every generator that
is not, ours or a library's, as plain asyncio would.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncGenerator
from typing import Any

log = logging.getLogger("chat")
_closing: set[asyncio.Task[None]] = set()  # held here so that they are not collected mid-way


def close_dropped_generators(loop: asyncio.AbstractEventLoop) -> None:
    """From now on, an async generator first run on this thread and dropped unfinished is closed
    by a task on `loop`, its `finally` run to the end."""

    def close(generator: AsyncGenerator[Any, Any]) -> None:
        task = loop.create_task(
            generator.aclose(), name=f"close {getattr(generator, '__qualname__', 'generator')}"
        )
        _closing.add(task)
        task.add_done_callback(_closed)

    def finalize(generator: AsyncGenerator[Any, Any]) -> None:
        if not loop.is_closed():  # dropped from any thread: closed on the loop's
            loop.call_soon_threadsafe(close, generator)

    sys.set_asyncgen_hooks(finalizer=finalize)


def _closed(task: asyncio.Task[None]) -> None:
    """A dropped generator's closing ended: what went wrong in its `finally` is logged at once."""
    _closing.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("%s failed", task.get_name(), exc_info=error)

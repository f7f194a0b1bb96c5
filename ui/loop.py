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
import sys
from collections.abc import AsyncGenerator
from typing import Any


def close_dropped_generators(loop: asyncio.AbstractEventLoop) -> None:
    """From now on, an async generator first run on this thread and dropped unfinished is closed
    by a task on `loop`, its `finally` run to the end."""

    def finalize(generator: AsyncGenerator[Any, Any]) -> None:
        if not loop.is_closed():  # dropped from any thread: closed on the loop's
            loop.call_soon_threadsafe(loop.create_task, generator.aclose())

    sys.set_asyncgen_hooks(finalizer=finalize)

"""Work a socket event starts (an edited message's answer, images once confirmed) as the chat's
running task, where a message's answer runs: the page shows it running, with its Stop button,
until it ends, and Stop cancels it.

Chainlit starts a new message's answer this way itself; work started from other events has to be
started so, or Stop does not reach it. However the work ends (done, failed, stopped at any moment,
even while the page is being told it started), the page is told it ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from chainlit.context import context

log = logging.getLogger(__name__)

_running: set[asyncio.Task[None]] = set()  # kept here so that they are not collected mid-way


def start(work: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
    """Run `work` as the chat's task (`what` names it in the log)."""
    task = asyncio.create_task(shown_running(work, what), name=what)
    context.session.current_task = task
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def shown_running(work: Coroutine[Any, Any, None], what: str) -> None:
    """`work`, the page told it runs until it ends; a Stop ends it quietly, as a message's answer
    ends; a failure is logged (the work tells the person what they need to know)."""
    emitter = context.emitter
    try:
        await emitter.task_start()
        await work
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("%s failed", what)
    finally:
        work.close()  # never started when Stop came first
        await emitter.task_end()

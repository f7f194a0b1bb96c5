"""An edited message, answered where Stop reaches it.

Chainlit's Stop cancels the session's current task. A new message is answered in one (Chainlit
starts it), but an edited message was answered inside its socket.io event, a task Stop does not
know: the page showed Stop while the edit's answer streamed, and pressing it stopped nothing (the
answer ran on to its output cap, and was charged for all of it). Here an edit is answered in a task
of its own, made the session's current task as a new message's is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from chainlit.context import init_ws_context
from chainlit.session import WebsocketSession

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]
_answering: set[asyncio.Task[None]] = set()  # kept here so that they are not collected mid-way


def answer_in_tasks(handlers: dict[str, Handler]) -> None:
    """Wrap Chainlit's `edit_message` socket handler: the edit is answered in a task that Stop
    cancels; the event itself returns at once."""
    edit = handlers["edit_message"]

    async def edit_in_a_task(sid: str, payload: Any) -> None:
        session = WebsocketSession.require(sid)
        task = asyncio.create_task(_answer(edit, sid, session, payload), name=f"edit {sid}")
        session.current_task = task
        _answering.add(task)
        task.add_done_callback(_answering.discard)

    handlers["edit_message"] = edit_in_a_task


async def _answer(edit: Handler, sid: str, session: WebsocketSession, payload: Any) -> None:
    """Chainlit's handling of the edit. A Stop while the answer runs ends it as Chainlit ends any
    stopped answer; one that comes sooner (while the page drops what followed the edited message)
    ends it here, and the page is told the task ended, which Chainlit's handler would not say."""
    try:
        await edit(sid, payload)
    except asyncio.CancelledError:
        context = init_ws_context(session)
        await context.emitter.task_end()
    except Exception:
        log.exception("Answering an edited message failed")

"""An edited message: the page and the model's memory drop what followed it together, then it is
answered where Stop reaches it.

Chainlit's Stop cancels the session's current task. A new message is answered in one (Chainlit
starts it), but Chainlit answered an edited message inside its socket.io event, a task Stop does
not know: the page showed Stop while the edit's answer streamed, and pressing it stopped nothing
(the answer ran on to its output cap, and was charged for all of it).

Here the edit event does what Chainlit's does first (the page drops every message after the edited
one, and shows the new text), rewinds the model's memory to match, and only then starts the
answer, as the chat's task (ui/chat_task.py). A Stop pressed at any moment stops the answer at
most: the page and the memory never disagree about what was said before it (a session's events
pass one at a time, ui/turnstile.py, so a Stop waits for the event to end).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from chainlit.chat_context import chat_context
from chainlit.config import config
from chainlit.context import init_ws_context
from chainlit.message import Message
from chainlit.session import WebsocketSession

from ui import chat_task

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]
Rewind = Callable[[str, str], Awaitable[object]]  # (thread id, message id): memory forgets from it


def answer_in_tasks(handlers: dict[str, Handler], rewind: Rewind) -> None:
    """Replace Chainlit's `edit_message` socket handler (see the module's docstring)."""

    async def edit_message(sid: str, payload: Any) -> None:
        session = WebsocketSession.require(sid)
        init_ws_context(session)
        edited = await drop_what_followed(payload["message"]["id"], payload["message"]["output"])
        if edited is None:  # no such message in this chat: nothing to answer
            return
        if session.thread_id:
            try:
                await rewind(session.thread_id, edited.id)
            except Exception:  # the turn rewinds memory again before it answers
                log.exception("Could not rewind the memory of an edited message")
        if config.code.on_message:
            chat_task.start(config.code.on_message(edited), "answering an edited message")

    handlers["edit_message"] = edit_message


async def drop_what_followed(message_id: str, text: str) -> Message | None:
    """As Chainlit's own edit: every message after `message_id` leaves the page, and it shows
    `text`. The edited message, or None when this chat has no such message."""
    edited = None
    for message in chat_context.get():
        if edited is not None:
            await message.remove()
        if message.id == message_id:
            message.content = text
            await message.update()
            edited = message
    return edited

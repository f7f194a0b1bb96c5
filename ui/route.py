"""Where a person's message goes: a text answer, images, an answer about their image, or a task.

`agents.router` decides; this module shows the decision (in the answer's step for chat, in the
quote's step for images and vision) and hands the message on. "No, just answer in text" (typed, or
the quote's button) cancels the chat's open image quote and answers its request in text.
"""

from __future__ import annotations

import chainlit as cl

from agents import router
from storage import work_quotes
from ui import images, tasks, turn, vision
from ui.deployment import Deployment, person


async def respond(d: Deployment, message: cl.Message) -> None:
    """Answer `message` as the router decides."""
    pictures = vision.attached_images(message)
    others = len(vision.attached(message)) - len(pictures)
    decision = router.decide(message.content, None, len(pictures), others)
    text_only = decision.kind == "chat" and router.wants_text_only(message.content)
    if text_only and await answer_open_quote_in_text(d):
        return
    if decision.kind == "image":
        await images.ask(d, decision.text, decision.reason)
    elif decision.kind == "task":
        await tasks.propose(d, message, decision.text, decision.reason)
    elif decision.kind == "vision":
        await vision.respond(d, message, pictures, decision.reason)
    else:
        await turn.respond(d, message, f"Chat · {decision.reason}")


async def answer_open_quote_in_text(d: Deployment) -> bool:
    """Cancel this chat's newest open image quote and answer its request in text; False when
    there is none."""
    thread_id = cl.context.session.thread_id
    waiting = [
        q for q in await work_quotes.open_in(d.engine, person(), thread_id) if q.kind == "image"
    ]
    if not waiting:
        return False
    quote = waiting[-1]
    if await work_quotes.decide(d.engine, quote.id, person(), "cancelled") is None:
        return False
    await _in_text(d, str(quote.request["prompt"]))
    return True


async def as_text(d: Deployment, action: cl.Action) -> None:
    """The quote's "Answer in text instead" button."""
    quote = await images.decide(d, action, "cancelled")
    if quote is not None:
        await _in_text(d, str(quote.request["prompt"]))


async def _in_text(d: Deployment, prompt: str) -> None:
    await turn.respond(
        d, cl.Message(content=prompt, type="user_message"), "Chat · You asked for a text answer."
    )

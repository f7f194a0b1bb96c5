"""A question about images the person attached, answered by a model that can see.

Each attachment is read from the session's files and prepared (`agents.vision.prepare`: anything
that is not a sane image is refused with the reason, before anything is held). The chat's model
answers if it can see; otherwise the cheapest enabled vision model does, and the step says so; with
none enabled (the offline default) the person is told what an administrator can configure. The
answer runs on the metered path like any chat answer, its hold being the prompt's tokens, the
images' estimated tokens and the longest answer; it is charged on the usage the provider reports.
Memory keeps the question's text and what was attached, not the image data.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import chainlit as cl
from chainlit.element import Element
from langchain_core.messages import HumanMessage

from agents import graph as conversation
from agents import vision
from agents.catalog import Model
from agents.errors import ModelNotAvailable
from agents.vision import Seen
from credits import metering
from credits.ledger import show_credits
from ui import answer, metered, turn, wallet
from ui.deployment import Deployment
from ui.errors import Refused

NO_VISION = (
    "No model here can see images. The bundled local model reads text only; an administrator can "
    "enable one that sees by setting a provider's key: NEBIUS_API_KEY (Gemma 3 27B, Qwen2.5 VL "
    "72B, Nemotron Nano V2), OPENAI_API_KEY (GPT-4o mini), or a vision model of their own "
    'OpenAI-compatible server in models.toml with "vision" among its capabilities.'
)
MOST_IMAGES = 4
DESCRIBE = "Describe this image."


def attached_images(message: cl.Message) -> list[Element]:
    """The files attached to `message` that say they are images (each is checked as one before
    use: what the browser says is not trusted)."""
    return [e for e in attached(message) if _says_image(e)]


def attached(message: cl.Message) -> list[Element]:
    """Every file attached to `message`."""
    return [e for e in (message.elements or []) if getattr(e, "path", None)]


def _says_image(element: Element) -> bool:
    mime = str(getattr(element, "mime", None) or "")
    name = str(element.name or "").lower()
    return mime.startswith("image/") or name.endswith((".png", ".jpg", ".jpeg", ".webp", ".gif"))


def seeing_model(d: Deployment, chosen: Model) -> tuple[Model, str]:
    """The model to answer, and why it is that one."""
    if chosen.can("vision"):
        return chosen, f"{chosen.label} sees images."
    able = d.catalog.enabled("vision")
    if not able:
        raise ModelNotAvailable(NO_VISION, pickable=False)
    cheapest = min(able, key=lambda m: m.input_usd_per_mtok + m.output_usd_per_mtok)
    return cheapest, (
        f"{chosen.label} cannot see images: {cheapest.label}, the cheapest model here that can, "
        "answers this one."
    )


async def prepared(d: Deployment, files: list[Element]) -> list[Seen]:
    """Each attachment as a vision model is sent it; `Refused` naming the first that cannot be."""
    if len(files) > MOST_IMAGES:
        raise Refused(f"Attach at most {MOST_IMAGES} images to one message.")
    s = d.settings
    seen = []
    for file in files:
        path = Path(str(file.path))
        name = file.name or path.name
        try:
            data = await asyncio.to_thread(_read, path, int(s.upload_max_mb * 2**20))
        except OSError:
            raise Refused(f"{name} could not be read: send it again.") from None
        seen.append(
            await asyncio.to_thread(
                vision.prepare, data, name, int(s.upload_max_mb * 2**20),
                int(s.upload_max_megapixels * 1_000_000),
            )
        )  # fmt: skip
    return seen


def _read(path: Path, most: int) -> bytes:
    """At most `most` + 1 bytes of `path` (enough to know it is too big)."""
    with open(path, "rb") as file:
        return file.read(most + 1)


async def respond(d: Deployment, message: cl.Message, files: list[Element], why: str) -> None:
    """Answer `message` about its images."""
    seen = await prepared(d, files)
    chosen = turn.current_model(d)
    model, which = seeing_model(d, chosen)
    context = turn.turn_context(d, model)
    thread_id = cl.context.session.thread_id
    text = turn.check_message(message.content or DESCRIBE, d.settings.max_message_chars)
    parts: list[str | dict] = [{"type": "text", "text": text}, *(s.part() for s in seen)]
    asked = HumanMessage(content=parts, id=message.id)
    prompt, question = await conversation.prompt_for(
        d.conversation, context, asked, thread_id, turn.edited(message)
    )
    shown = ", ".join(
        f"{f.name} ({s.source}, sent at {s.width}x{s.height})"
        for f, s in zip(files, seen, strict=True)
    )
    remembered = HumanMessage(content=f"{text}\n\n[Attached: {shown}]", id=question.id)
    image_tokens = sum(s.tokens for s in seen)
    longest = d.settings.max_output_tokens
    tokens_in = conversation.most_input_tokens(prompt, model.context_length, longest) + image_tokens
    work = metering.Work(
        "vision",
        d.pricing.tokens(model, tokens_in, longest),
        {"model": model.id, "images": len(seen)},
    )
    step = cl.Step(name="Route", type="tool", show_input=False)
    step.output = (
        f"**Vision** · {why} {which}\n\nHeld at most **{show_credits(work.most)} credits**: "
        f"about {image_tokens:,} tokens for the image{'s' if len(seen) > 1 else ''}, the text, and "
        "the longest answer; charged on what the model reports."
    )
    await step.send()

    async def reply(meter: metering.Meter | None) -> None:
        bill = turn.make_bill(d, meter, model, context, prompt)
        await answer.answer(
            d.conversation, context, model, question, thread_id, d.settings.stream_flush_ms, bill,
            f"Vision · {which}", remembered,
        )  # fmt: skip

    async def short(available: int) -> None:
        await wallet.tell_cannot_cover(
            d, available, "this answer",
            f"{model.label} could cost up to **{show_credits(work.most)} credits** to look at "
            "this and answer",
        )  # fmt: skip

    await metered.run(d, work, reply, short)

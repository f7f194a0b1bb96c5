"""`/summary`: this chat so far, summarised by the chosen model, priced per token it reads.

A kind of metered work beside chat answers, priced by its own catalogue entry (`[work.summary]` in
models.toml) rather than by the model's token prices, and run on the same metered path
(ui/metered.py). The summary reads the conversation's memory and is not added to it: the model's
next answer does not see it. Every way it can end:

- The quote is exact: the tokens it reads are counted before anything is held.
- Any text shown (finished, failed part-way, or stopped by the person): the model read the whole
  conversation, so the quote is charged.
- Failed or stopped before any text: released, nothing charged.
- Not enough credits, no conversation yet, or no price in the catalogue: nothing held or sent.
"""

from __future__ import annotations

import time
import uuid
from contextlib import aclosing

import chainlit as cl
from langchain_core.messages import BaseMessage, HumanMessage

from agents import graph as conversation
from agents.catalog import Model
from agents.providers import as_agent_error
from agents.state import TurnContext
from credits import metering
from credits.ledger import show_credits
from ui import answer, errors, metered, turn, wallet
from ui.command import Command
from ui.deployment import Deployment

KIND = "summary"
ASK = (
    "Summarise our conversation so far in a few sentences: what was asked, what was answered, "
    "and what is still open."
)


async def summarise(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    """The summary of this chat, streamed into a message of its own, with its cost under it."""
    if KIND not in d.catalog.work:
        raise errors.Refused("Summaries are not offered here (the catalogue prices none).")
    model = turn.current_model(d)
    context = turn.turn_context(d, model)
    ask = HumanMessage(content=ASK, id=str(uuid.uuid4()))
    thread_id = cl.context.session.thread_id
    prompt, _ = await conversation.prompt_for(d.conversation, context, ask, thread_id, False)
    if len(prompt) <= 2:  # the system prompt and the request: nothing said yet
        raise errors.Refused("There is nothing to summarise yet: this chat has no messages.")
    tokens_in = context.count_tokens(prompt)
    price = d.catalog.price_of(KIND)
    work = metering.Work(KIND, d.pricing.work(price, tokens_in=tokens_in), {"model": model.id})

    async def run(meter: metering.Meter | None) -> None:
        label = f"{price.label} · {model.label}"
        await stream(d, context, model, prompt, meter, work.most, tokens_in, label)

    async def short(available: int) -> None:
        await wallet.tell_shortfall(wallet.Shortfall(available, work.most, model, None, d.selling))

    await metered.run(d, work, run, short)


async def stream(
    d: Deployment,
    context: TurnContext,
    model: Model,
    prompt: list[BaseMessage],
    meter: metering.Meter | None,
    quote: int,
    tokens_in: int,
    author: str,
) -> None:
    """Stream the summary into a message; once it ends, however, charge the quote if any text
    was shown, and show the step with what it cost."""
    message = cl.Message(content="", author=author)
    relay = answer.TokenRelay(message, d.settings.stream_flush_ms / 1000)
    shown = False
    started = time.monotonic()
    items = context.model.stream_text(prompt)
    try:
        async with aclosing(items):  # Stop while a token is shown: the provider hears it at once
            async for item in items:
                if isinstance(item, str) and item:
                    shown = True
                    await relay.push(item)
    except Exception as exc:
        error = as_agent_error(exc)
        if error is None:
            raise
        await cl.ErrorMessage(content=errors.model_failed(model, error, shown)).send()
    finally:
        await relay.flush()
        if message.content:
            await message.send()
        if shown and meter is not None:
            meter.use(quote, {"tokens_in": tokens_in})
        cost = "not metered" if meter is None else f"cost **{show_credits(meter.charged)} credits**"
        step = cl.Step(name=author, type="llm", show_input=False)
        step.output = f"**{author}** · {cost} · {time.monotonic() - started:.2f} s"
        await step.send()


COMMANDS = (
    Command(KIND, "scroll-text", "A summary of this chat so far, priced per token read", summarise),
)

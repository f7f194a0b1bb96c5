"""One answer streamed into the chat: tokens as they come, then the step under it with its cost.

Tokens are coalesced into one UI event per `flush_ms` (60 ms by default: the eye cannot tell 100
updates a second from 16, and each one costs the event loop time that local decoding also needs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field

import chainlit as cl
from langchain_core.messages import BaseMessage

from agents import graph as conversation
from agents.catalog import Model
from agents.errors import AgentError
from agents.state import TurnContext, Usage
from credits.ledger import show_credits
from ui import errors

log = logging.getLogger("chat")


@dataclass
class Reply:
    """What one turn produced: the text delivered and the usage the provider reported."""

    parts: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    first_token_ms: float | None = None
    total_ms: float = 0.0

    @property
    def delivered(self) -> bool:
        return bool(self.parts)

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass(frozen=True)
class Charge:
    """What one answer costs, and the tokens it is priced on."""

    units: int | None  # None: metering is off
    tokens_in: int
    tokens_out: int
    counted: bool  # the provider reported no usage: the tokens were counted here


Bill = Callable[[Reply], Charge]


class TokenRelay:
    """Streams text into a Chainlit message, at most one UI event per interval."""

    def __init__(self, message: cl.Message, interval_s: float) -> None:
        self.message = message
        self.interval_s = interval_s
        self.pending: list[str] = []
        self.last = 0.0

    async def push(self, text: str) -> None:
        self.pending.append(text)
        now = time.monotonic()
        if now - self.last >= self.interval_s:
            await self.flush(now)

    async def flush(self, now: float | None = None) -> None:
        if self.pending:
            await self.message.stream_token("".join(self.pending))
            self.pending.clear()
        self.last = now if now is not None else time.monotonic()


async def answer(
    graph: conversation.Conversation,
    context: TurnContext,
    model: Model,
    question: BaseMessage,
    thread_id: str,
    flush_ms: int,
    bill: Bill,
    routed: str = "",
    remember_as: BaseMessage | None = None,
) -> Reply:
    """Run one turn and stream it into a new message; a provider failure becomes a chat message.

    However the turn ends (finished, failed, stopped by the user), `bill` prices what was delivered
    and the step under the answer shows it.
    """
    message = cl.Message(content="", author=model.label)
    relay = TokenRelay(message, flush_ms / 1000)
    reply = Reply()
    started = time.monotonic()
    items = conversation.stream(graph, context, question, thread_id, remember_as)
    try:
        # Closed here however the turn ends: Stop lands anywhere, often while a token is shown,
        # and a stream left open holds the provider's connection until the collector finds it.
        async with aclosing(items):
            async for item in items:
                if isinstance(item, Usage):
                    reply.input_tokens, reply.output_tokens = item.input_tokens, item.output_tokens
                    continue
                if reply.first_token_ms is None:
                    reply.first_token_ms = (time.monotonic() - started) * 1000
                reply.parts.append(item)
                await relay.push(item)
    except AgentError as error:
        log.warning("Turn failed on %s: %s", model.id, error)
        await cl.ErrorMessage(content=errors.model_failed(model, error, reply.delivered)).send()
    finally:
        reply.total_ms = (time.monotonic() - started) * 1000
        await relay.flush()
        if message.content:
            await message.send()
        step = cl.Step(name=model.label, type="llm", show_input=False)
        step.output = describe(model, reply, bill(reply)) + (f"\n\n{routed}" if routed else "")
        await step.send()
    return reply


def describe(model: Model, reply: Reply, charge: Charge) -> str:
    first = "" if reply.first_token_ms is None else f", first token {reply.first_token_ms:.0f} ms"
    counted = " (counted here: the provider reported no usage)" if charge.counted else ""
    cost = (
        "not metered" if charge.units is None else f"cost **{show_credits(charge.units)} credits**"
    )
    return (
        f"**{model.label}** · {cost} · "
        f"{charge.tokens_in:,} tokens in · {charge.tokens_out:,} tokens out{counted} · "
        f"{reply.total_ms / 1000:.2f} s{first}"
    )

"""A chat turn: a person's message answered by the chosen model, held and charged as it goes.

The message is checked (empty, too long), the model chosen (this chat's pick, "auto", or the
default), the prompt built from the conversation's memory (an edited message rewinds it first), and
the answer quoted at its most: every prompt token and the longest answer. Then it runs on the
metered path (ui/metered.py): streamed into the chat, priced on the usage the provider reported or,
when it reported none (a stopped or broken stream), on tokens counted here. Not enough credits:
nothing is sent to the model, and a cheaper model that fits is offered.
"""

from __future__ import annotations

import chainlit as cl
from langchain_core.messages import BaseMessage, HumanMessage

from agents import graph as conversation
from agents.catalog import Model
from agents.prompts import SYSTEM_PROMPT
from agents.providers import chat_model, text_counter, token_counter
from agents.state import TurnContext
from credits import metering
from ui import answer, metered, picker, wallet
from ui.deployment import Deployment
from ui.errors import Refused


class MessageRejected(Refused):
    """The person's message cannot be sent to a model (empty or too long)."""


async def respond(d: Deployment, message: cl.Message, routed: str = "") -> None:
    """Answer `message` in this chat (`routed`: why it is a chat answer, shown in its step)."""
    text = check_message(message.content, d.settings.max_message_chars)
    model = current_model(d)
    context = turn_context(d, model)
    thread_id = cl.context.session.thread_id
    prompt, question = await conversation.prompt_for(
        d.conversation, context, HumanMessage(content=text, id=message.id), thread_id,
        edited(message),
    )  # fmt: skip
    work = metering.Work("chat", most_cost(d, model, prompt), {"model": model.id})

    async def reply(meter: metering.Meter | None) -> None:
        bill = make_bill(d, meter, model, context, prompt)
        await answer.answer(
            d.conversation, context, model, question, thread_id, d.settings.stream_flush_ms, bill,
            routed,
        )  # fmt: skip

    async def short(available: int) -> None:
        cheaper = cheaper_fit(d, model, prompt, available, work.most)
        await wallet.tell_shortfall(
            wallet.Shortfall(available, work.most, model, cheaper, d.selling)
        )

    await metered.run(d, work, reply, short)


def check_message(content: str, limit: int) -> str:
    """The message to send, or `MessageRejected` saying why not."""
    text = content.strip()
    if not text:
        raise MessageRejected("")
    if len(content) > limit:
        raise MessageRejected(
            f"Your message is {len(content):,} characters long; the limit is {limit:,}. "
            "Nothing was sent to the model: shorten it and send it again."
        )
    return text


def edited(message: cl.Message) -> bool:
    """Whether this message came from an edit: Chainlit's edit removes every later message from
    the chat and runs the edited one again, so it is the chat's only message with its id. A replay
    of an old message id comes in as a second message beside the first."""
    return sum(m.id == message.id for m in cl.chat_context.get()) == 1


def current_model(d: Deployment) -> Model:
    """The model for this turn: the one picked in this chat, "auto", or the default."""
    chosen = (cl.user_session.get("chat_settings") or {}).get(picker.WIDGET)
    return d.catalog.choose(picker.valid(d.catalog, chosen))


def turn_context(d: Deployment, model: Model) -> TurnContext:
    s = d.settings
    return TurnContext(
        model=chat_model(
            model,
            d.runner,
            s.max_output_tokens,
            s.model_timeout_s,
            s.local_temperature,
            s.stream_flush_ms / 1000,
            s.model_deadline_s,
        ),
        context_length=model.context_length,
        max_output_tokens=s.max_output_tokens,
        count_tokens=token_counter(model, d.runner),
        system_prompt=SYSTEM_PROMPT,
    )


def most_cost(d: Deployment, model: Model, prompt: list[BaseMessage]) -> int:
    """The most an answer from `model` to `prompt` can cost: every prompt token and the longest
    answer."""
    longest = d.settings.max_output_tokens
    tokens_in = conversation.most_input_tokens(prompt, model.context_length, longest)
    return d.pricing.tokens(model, tokens_in, longest)


def cheaper_fit(
    d: Deployment, model: Model, prompt: list[BaseMessage], available: int, needed: int
) -> Model | None:
    """The cheapest other chat model whose answer to `prompt` fits `available`, if any."""
    by_price = sorted(
        d.catalog.enabled("chat"), key=lambda m: m.input_usd_per_mtok + m.output_usd_per_mtok
    )
    for other in by_price:
        if other.id != model.id and most_cost(d, other, prompt) <= min(available, needed - 1):
            return other
    return None


def make_bill(
    d: Deployment,
    meter: metering.Meter | None,
    model: Model,
    context: TurnContext,
    prompt: list[BaseMessage],
) -> answer.Bill:
    """Prices a reply on the usage the provider reported, or on tokens counted here when it
    reported none (a stopped or broken stream), and tells the meter (None: metering is off)."""

    def bill(reply: answer.Reply) -> answer.Charge:
        counted = False
        if reply.input_tokens is not None and reply.output_tokens is not None:
            tokens_in, tokens_out = reply.input_tokens, reply.output_tokens
        elif reply.delivered:
            counted = True
            tokens_in = context.count_tokens(prompt)
            tokens_out = text_counter(model, d.runner)(reply.text)
        else:  # failed before any token: nothing is charged, the hold is released
            return answer.Charge(None if meter is None else 0, 0, 0, False)
        details: dict[str, object] = {"tokens_in": tokens_in, "tokens_out": tokens_out}
        if counted:
            details["counted"] = True
        if meter is None:
            return answer.Charge(None, tokens_in, tokens_out, counted)
        meter.use(d.pricing.tokens(model, tokens_in, tokens_out), details)
        return answer.Charge(meter.charged, tokens_in, tokens_out, counted)

    return bill

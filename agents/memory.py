"""Fitting a long conversation into a model's context window.

The full history stays in the checkpoint; only what is sent to the model is trimmed. The system prompt
and the newest message always go; older messages go newest first while they fit.

Counting tokens exactly means rendering the chat template and tokenizing, on the event loop, before the
first token can come. Most conversations are far below the window, so an upper bound is tried first:
no tokenizer makes more tokens than the text has UTF-8 bytes, plus the template's few per message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.errors import ModelFailed


def fit(
    messages: Sequence[BaseMessage],
    budget: int,
    count: Callable[[Sequence[BaseMessage]], int],
) -> list[BaseMessage]:
    """The longest recent tail of `messages` (plus a leading system prompt) within `budget` tokens."""
    if upper_bound(messages) <= budget:
        return list(messages)
    system: list[BaseMessage] = [m for m in messages[:1] if isinstance(m, SystemMessage)]
    rest = list(messages[len(system) :])
    if not rest:
        return system
    used = count(system) if system else 0
    kept: list[BaseMessage] = []
    for message in reversed(rest):
        cost = count([message])
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    if not kept:
        raise ModelFailed(
            "Your message is too long for this model's context window: shorten it or pick a model "
            "with a larger context."
        )
    kept.reverse()
    # Start on a user turn: chat templates expect user/assistant alternation after the system.
    while len(kept) > 1 and not isinstance(kept[0], HumanMessage):
        kept.pop(0)
    return system + kept


TEMPLATE_TOKENS_PER_MESSAGE = (
    16  # generous: ChatML uses 5 (<|im_start|>, role, newline, <|im_end|>, newline)
)


def upper_bound(messages: Sequence[BaseMessage]) -> int:
    """At least as many tokens as any tokenizer makes of `messages` in a chat template."""
    text_bytes = sum(len(m.text.encode()) for m in messages)
    return text_bytes + TEMPLATE_TOKENS_PER_MESSAGE * (len(messages) + 1)

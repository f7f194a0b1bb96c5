"""Fitting a long conversation into a model's context window.

The full history stays in the checkpoint; only what is sent to the model is trimmed. The system prompt
and the newest message always go; older messages go newest first while they fit.
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

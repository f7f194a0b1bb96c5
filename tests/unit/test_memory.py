"""Fitting conversations into a context window."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from agents.errors import ModelFailed
from agents.memory import fit


def words(messages: Sequence[BaseMessage]) -> int:
    return sum(len(m.text.split()) + 1 for m in messages)


def conversation(turns: int) -> list[BaseMessage]:
    out: list[BaseMessage] = [SystemMessage("be kind")]
    for i in range(turns):
        out += [HumanMessage(f"question {i} " * 5), AIMessage(f"answer {i} " * 5)]
    return out


def test_short_conversation_is_sent_whole() -> None:
    messages = [*conversation(3), HumanMessage("and now?")]
    assert fit(messages, 1000, words) == messages


def test_long_conversation_keeps_system_prompt_and_newest_messages_within_budget() -> None:
    messages = [*conversation(500), HumanMessage("the newest question")]
    fitted = fit(messages, 200, words)
    assert words(fitted) <= 200
    assert fitted[0] == messages[0]
    assert fitted[-1] == messages[-1]
    assert fitted[1:] == messages[-(len(fitted) - 1) :]  # a contiguous recent tail
    assert isinstance(fitted[1], HumanMessage)
    assert len(fitted) > 10


def test_a_message_larger_than_the_window_is_a_clear_error() -> None:
    with pytest.raises(ModelFailed, match="too long"):
        fit([SystemMessage("s"), HumanMessage("word " * 500)], 100, words)

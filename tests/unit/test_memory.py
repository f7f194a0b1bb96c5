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


def test_the_upper_bound_skips_counting_only_when_it_is_safe() -> None:
    calls: list[int] = []

    def counting(messages: Sequence[BaseMessage]) -> int:
        calls.append(len(messages))
        return words(messages)

    short = [SystemMessage("s"), HumanMessage("hello there")]
    assert fit(short, 1000, counting) == short and calls == []
    long = [*conversation(50), HumanMessage("newest")]
    fitted = fit(long, 200, counting)
    assert calls and words(fitted) <= 200


def test_the_upper_bound_is_never_below_a_real_token_count() -> None:
    from agents.memory import upper_bound

    text = "naïve café 東京 🎉 " * 50
    messages = [SystemMessage(text), HumanMessage(text)]
    # One token per byte is the most any byte-level tokenizer can produce.
    assert upper_bound(messages) >= len(text.encode()) * 2

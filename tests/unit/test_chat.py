"""Checking messages and coalescing streamed tokens."""

from __future__ import annotations

import asyncio

import pytest

from ui.answer import TokenRelay
from ui.turn import MessageRejected, check_message


def test_empty_and_whitespace_messages_are_rejected_silently() -> None:
    for text in ("", "   ", "\n\t"):
        with pytest.raises(MessageRejected) as info:
            check_message(text, 100)
        assert str(info.value) == ""


def test_a_message_over_the_limit_is_rejected_with_the_numbers() -> None:
    with pytest.raises(MessageRejected, match="16,001 characters long; the limit is 16,000"):
        check_message("x" * 16_001, 16_000)
    assert check_message("x" * 16_000, 16_000) == "x" * 16_000


class FakeMessage:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def stream_token(self, text: str) -> None:
        self.events.append(text)


async def test_tokens_are_coalesced_into_few_events_and_none_is_lost() -> None:
    message = FakeMessage()
    relay = TokenRelay(message, interval_s=0.05)  # type: ignore[arg-type]
    tokens = [f"t{i} " for i in range(100)]
    for token in tokens:
        await relay.push(token)
        await asyncio.sleep(0.001)
    await relay.flush()
    assert "".join(message.events) == "".join(tokens)
    assert message.events[0] == "t0 "  # the first token is not held back
    assert len(message.events) < 20


async def test_zero_interval_sends_every_token() -> None:
    message = FakeMessage()
    relay = TokenRelay(message, interval_s=0)  # type: ignore[arg-type]
    for token in ("a", "b", "c"):
        await relay.push(token)
    assert message.events == ["a", "b", "c"]


def test_the_failure_message_says_whether_anything_was_shown() -> None:
    from agents.catalog import load_catalog
    from agents.errors import ModelUnreachable
    from settings import ROOT
    from ui.errors import model_failed as failure_text

    model = load_catalog(ROOT / "models.toml", lambda _: None, "smollm2-135m").get("smollm2-135m")
    error = ModelUnreachable("The model server could not be reached.")
    assert "Your message was not answered." in failure_text(model, error, partial=False)
    partial = failure_text(model, error, partial=True)
    assert "stopped part-way" in partial and "not answered" not in partial

"""The router's decisions on a fixed set of requests, overrides included."""

from __future__ import annotations

import pytest

from agents.router import decide, wants_text_only

DECISIONS = [
    # (text, command, images attached, decision)
    ("draw a lighthouse at dusk", None, 0, "image"),
    ("Draw me a cat wearing a hat", None, 0, "image"),
    ("please paint a sunset over the sea", None, 0, "image"),
    ("Can you sketch a robot?", None, 0, "image"),
    ("generate an image of a red fox in the snow", None, 0, "image"),
    ("Make a picture of my dog as a pirate", None, 0, "image"),
    ("create a logo for a coffee shop called Bean There", None, 0, "image"),
    ("I want a wallpaper with mountains at night", None, 0, "image"),
    ("A photo of a rainy street in Tokyo", None, 0, "image"),
    ("an illustration of a dragon reading a book", None, 0, "image"),
    ("a lighthouse at dusk", "image", 0, "image"),
    ("what is the capital of France?", None, 0, "chat"),
    ("How do I draw a circle in Python with turtle?", None, 0, "chat"),
    ("draw a bar chart of these numbers in matplotlib", None, 0, "chat"),
    ("write SVG code for a star icon", None, 0, "chat"),
    ("Explain how diffusion models generate images", None, 0, "chat"),
    ("What's in a picture frame usually?", None, 0, "chat"),
    ("summarise this paragraph for me", None, 0, "chat"),
    ("what is in this picture?", None, 1, "vision"),
    ("", None, 2, "vision"),
    ("draw something like this", None, 1, "vision"),
    ("no, just answer in text", None, 0, "chat"),
    ("No, just answer in text: draw a lighthouse at dusk", None, 0, "chat"),
    ("text only please: paint a sunset", None, 0, "chat"),
    ("no image, describe a lighthouse at dusk", None, 0, "chat"),
    ("just answer in text", "image", 0, "chat"),
]


@pytest.mark.parametrize(("text", "command", "images", "kind"), DECISIONS)
def test_the_router_decides(text: str, command: str | None, images: int, kind: str) -> None:
    decision = decide(text, command, images)
    assert decision.kind == kind, decision
    assert decision.reason.endswith(".")


def test_an_override_alone_is_told_apart_from_an_override_with_a_request() -> None:
    assert wants_text_only("no, just answer in text")
    assert wants_text_only("No, just answer in text please.")
    assert not wants_text_only("No, just answer in text: how tall is the lighthouse of Alexandria?")
    assert not wants_text_only("draw a lighthouse")

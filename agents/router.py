"""What a message asks for: a text answer, an image, an answer about an image it carries, or a long
task.

On every deployment the decision is made by the rules below, in order, from the message's command,
its attachments and its words; each decision says why in a sentence the person sees (a step of the
chat), and a person can always override it ("no, just answer in text").

1. Typed words that refuse images ("no, just answer in text", "text only") win: chat.
2. `/image` is an image.
3. An attached image is a question about it: vision.
4. Other files attached (text, CSV, code) are for a long task to read: a task is proposed.
5. A request to research or investigate something, or to write and test code, is proposed as a
   long task (it needs several steps); the person sees the quote and may answer in chat instead.
6. A request to draw, paint, sketch or illustrate, to make, generate or show a picture, photo,
   illustration, logo..., or for one ("I want a wallpaper of..."), is an image; unless it is
   about code (a Python turtle, SVG, CSS, ASCII art, matplotlib...), which is text.
7. Anything else is chat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["chat", "image", "vision", "task"]

TEXT_ONLY = re.compile(
    r"^\W*(no\b[\s,.!]*)?(just\s+)?(answer|reply|respond|write)\s+(in|with)\s+(plain\s+)?text\b"
    r"|^\W*(text|words)\s+only\b|^\W*no\s+(image|picture|drawing)s?\b",
    re.IGNORECASE,
)
PICTURE = (
    r"(image|picture|pic|photo|photograph|illustration|drawing|painting|sketch|portrait|"
    r"wallpaper|poster|logo|icon|artwork|render(ing)?)s?"
)
DRAW = re.compile(
    r"^\W*(please\s+|pls\s+)?((can|could|would|will)\s+you\s+(please\s+)?)?"
    r"(draw|paint|sketch|illustrate|doodle)\b",
    re.IGNORECASE,
)
MAKE_PICTURE = re.compile(
    r"^\W*(please\s+)?((can|could|would|will)\s+you\s+(please\s+)?|i\s+(want|need|would\s+like)\s+"
    r"|let'?s\s+)?(generate|create|make|design|render|produce|give\s+me|show\s+me|paint|draw)\b"
    r"[^.?!\n]{0,60}?\b" + PICTURE + r"\b",
    re.IGNORECASE,
)
PICTURE_OF = re.compile(r"^\W*(an?\s+)?" + PICTURE + r"\s+of\b", re.IGNORECASE)
WANT_PICTURE = re.compile(
    r"^\W*(please\s+)?i\s*('d|would|want|need)(\s+like)?\s+(an?\s+|some\s+)?(new\s+)?"
    + PICTURE
    + r"\b",
    re.IGNORECASE,
)
ABOUT_CODE = re.compile(
    r"\b(python|code|program|script|function|svg|css|html|javascript|js|ascii|latex|tikz|"
    r"matplotlib|turtle|canvas|opengl|unity|blender|excel|chart|graph|plot|diagram in mermaid)\b",
    re.IGNORECASE,
)


SEVERAL_STEPS = re.compile(
    r"^\W*(please\s+)?((can|could|would|will)\s+you\s+(please\s+)?)?"
    r"(research|investigate|do\s+(some\s+)?research\s+on|write\s+and\s+test|"
    r"(build|implement|code)\s+and\s+test)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Decision:
    """What the message is (`kind`), why, and the text of the request for that kind of work."""

    kind: Kind
    reason: str
    text: str


def decide(text: str, command: str | None = None, images: int = 0, files: int = 0) -> Decision:
    """The decision for a message of `text` with `command` (if picked from the menu or typed),
    `images` image attachments and `files` other files."""
    words = text.strip()
    if TEXT_ONLY.search(words):
        return Decision("chat", "You asked for a text answer.", words)
    if command == "image":
        return Decision("image", "You asked for an image with /image.", words)
    if images:
        return Decision(
            "vision", f"Your message carries {_images(images)}: a question about it.", words
        )
    if files:
        return Decision("task", f"Your message carries {_files(files)}: a task can read it.", words)
    if SEVERAL_STEPS.search(words):
        return Decision("task", "Your request needs several steps: a task can take them.", words)
    if not ABOUT_CODE.search(words) and (
        DRAW.search(words)
        or MAKE_PICTURE.search(words)
        or PICTURE_OF.search(words)
        or WANT_PICTURE.search(words)
    ):
        return Decision("image", "Your message asks for a picture.", words)
    return Decision("chat", "A question or request for text.", words)


def wants_text_only(text: str) -> bool:
    """Whether `text` is only an override to answer in text (nothing else to answer)."""
    match = TEXT_ONLY.search(text.strip())
    return match is not None and len(text.strip()) - match.end() <= 12


def _images(n: int) -> str:
    return "an image" if n == 1 else f"{n} images"


def _files(n: int) -> str:
    return "a file" if n == 1 else f"{n} files"

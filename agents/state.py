"""What the conversation graph keeps per thread, and what each turn is given."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Protocol, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langgraph.graph.message import add_messages


class State(TypedDict, total=False):
    """The checkpointed memory of one thread.

    `question` carries the user's new message into the turn; it joins `messages` together with the
    answer, so a turn that fails leaves the memory as it was. `remember_as`, when given, joins in
    its place: a question about an image is sent with the image and remembered as its text.
    """

    messages: Annotated[list[AnyMessage], add_messages]
    question: BaseMessage | None
    remember_as: BaseMessage | None


@dataclass(frozen=True)
class Usage:
    """Tokens a model reports for one answer."""

    input_tokens: int
    output_tokens: int

    def as_metadata(self) -> UsageMetadata:
        """As LangChain messages carry it."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }


class Speaker(Protocol):
    """A chat model as a turn uses it: the answer's text as it comes, then the usage if reported.

    Both our models (`LocalChatModel`, `RemoteChatModel`) are LangChain chat models too; a turn
    streams through this instead, as plain strings: LangChain's chunk objects and callbacks per
    token took ~8 of the ~38 ms of CPU a turn cost at 200 sessions (bench/turns.py).
    """

    def stream_text(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[str | Usage, None]: ...


def as_answer(items: Iterable[str | Usage]) -> AIMessage:
    """One answer message from the text pieces and usage a `Speaker` streamed."""
    parts: list[str] = []
    usage = None
    for item in items:
        if isinstance(item, Usage):
            usage = item
        else:
            parts.append(item)
    return AIMessage(content="".join(parts), usage_metadata=usage.as_metadata() if usage else None)


@dataclass(frozen=True)
class TurnContext:
    """The model and limits for one turn (LangGraph runtime context; not checkpointed)."""

    model: Speaker
    context_length: int
    max_output_tokens: int
    count_tokens: Callable[[Sequence[BaseMessage]], int]
    system_prompt: str

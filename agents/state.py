"""What the conversation graph keeps per thread, and what each turn is given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, BaseMessage
from langgraph.graph.message import add_messages


class State(TypedDict, total=False):
    """The checkpointed memory of one thread.

    `question` carries the user's new message into the turn; it joins `messages` together with the
    answer, so a turn that fails leaves the memory as it was.
    """

    messages: Annotated[list[AnyMessage], add_messages]
    question: BaseMessage | None


@dataclass(frozen=True)
class Usage:
    """Tokens a model reports for one answer."""

    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class TurnContext:
    """The model and limits for one turn (LangGraph runtime context; not checkpointed)."""

    model: BaseChatModel
    context_length: int
    max_output_tokens: int
    count_tokens: Callable[[Sequence[BaseMessage]], int]
    system_prompt: str

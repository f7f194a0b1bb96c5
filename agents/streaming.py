"""What our two chat models share: LangChain's chat model interface over a plain text stream.

Each model (`agents.local`, `agents.remote`) writes two methods, `stream_text` (the answer's text as
it comes, then its usage) and `answer_items` (the same, all at once, off the event loop); this base
turns them into `invoke`, `ainvoke` and `astream` for any LangChain caller. A chat turn calls
`stream_text` itself (see `agents.state.Speaker`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from agents.state import Usage, as_answer


class StreamingChatModel(BaseChatModel):
    """A LangChain chat model made of `stream_text` and `answer_items`."""

    @abstractmethod
    def stream_text(self, messages: Sequence[BaseMessage]) -> AsyncGenerator[str | Usage, None]:
        """The answer's text as it comes, then its usage when the model reports it."""

    @abstractmethod
    def answer_items(self, messages: Sequence[BaseMessage]) -> list[str | Usage]:
        """The whole answer (text pieces and usage), without an event loop."""

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        _no_stop(stop)
        return ChatResult(
            generations=[ChatGeneration(message=as_answer(self.answer_items(messages)))]
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        _no_stop(stop)
        items = [item async for item in self.stream_text(messages)]
        return ChatResult(generations=[ChatGeneration(message=as_answer(items))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        _no_stop(stop)
        items = self.stream_text(messages)
        async with aclosing(items):
            async for item in items:
                if isinstance(item, Usage):
                    usage = AIMessageChunk(
                        content="", usage_metadata=item.as_metadata(), chunk_position="last"
                    )
                    yield ChatGenerationChunk(message=usage)
                    continue
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=item))
                if run_manager:
                    await run_manager.on_llm_new_token(item, chunk=chunk)
                yield chunk


def _no_stop(stop: list[str] | None) -> None:
    if stop:
        raise ValueError("stop sequences are not supported by this chat model")

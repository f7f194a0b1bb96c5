"""Chat with a model behind an OpenAI-compatible API: `POST /chat/completions`, streamed.

A LangChain chat model written straight on httpx: the request as the API documents it, the
server-sent events read line by line with `json.loads`, stream usage asked for. It does what this
product needs of a remote chat model (text in, text out, usage, errors that say what went wrong)
at a third of the CPU of `langchain_openai.ChatOpenAI` over the `openai` SDK, whose typed models
for every chunk cost more than the rest of a turn's streaming (bench/turns.py; the numbers are in
the README).

Each event loop keeps one connection pool per provider, reused by every turn.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import (
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult

from agents.errors import ModelFailed

# Room for every concurrent turn (httpx's default pool stops at 100 connections).
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)

ROLES = {"system": "system", "human": "user", "ai": "assistant"}

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def pool(timeout_s: float) -> httpx.AsyncClient:
    """This event loop's HTTP client (connections are bound to the loop that opened them)."""
    per_loop = _pools.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(timeout_s)
    if client is None or client.is_closed:
        client = per_loop[timeout_s] = httpx.AsyncClient(timeout=timeout_s, limits=LIMITS)
    return client


def as_openai(messages: Iterable[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages in the API's shape (text, or content parts as LangChain keeps them)."""
    out = []
    for m in messages:
        if m.type not in ROLES:
            raise ValueError(f"a {m.type} message has no place in a chat completion request")
        out.append({"role": ROLES[m.type], "content": m.content})
    return out


class RemoteChatModel(BaseChatModel):
    """A model of an OpenAI-compatible provider; streams, and reports usage like `LocalChatModel`."""

    base_url: str
    api_key: str = ""
    model_name: str
    max_tokens: int = 512
    timeout_s: float = 60.0

    @property
    def _llm_type(self) -> str:
        return "openai-compatible"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        url, body, headers = self._request(messages, stop)
        with (
            httpx.Client(timeout=self.timeout_s) as client,
            client.stream("POST", url, json=body, headers=headers) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise refused(response)
            chunks = [c for c in map(chunk_of, events(response.iter_lines())) if c]
        return generate_from_stream(iter(chunks))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        url, body, headers = self._request(messages, stop)
        async with pool(self.timeout_s).stream("POST", url, json=body, headers=headers) as response:
            if response.status_code >= 400:
                await response.aread()
                raise refused(response)
            async for line in response.aiter_lines():
                if line.startswith("data:"):  # not a blank separator, comment or `event:` line
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = chunk_of(data)
                    if chunk is None:
                        continue
                    if run_manager and chunk.text:
                        await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                    yield chunk

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None
    ) -> tuple[str, dict[str, Any], dict[str, str]]:
        """The URL, JSON body and headers of a streamed chat completion with usage."""
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": as_openai(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": self.max_tokens,
        }
        if stop:
            body["stop"] = stop
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return self.base_url.rstrip("/") + "/chat/completions", body, headers


def events(lines: Iterator[str]) -> Iterator[str]:
    """The data of each server-sent event, up to `[DONE]`."""
    for line in lines:
        if line.startswith("data:"):
            data = line[5:].strip()
            if data == "[DONE]":
                return
            yield data


def refused(response: httpx.Response) -> ModelFailed:
    return ModelFailed(f"The model server answered with an error (HTTP {response.status_code}).")


def chunk_of(data: str) -> ChatGenerationChunk | None:
    """One streamed event as a chunk: its text, or its usage; None when it has neither."""
    try:
        event = json.loads(data)
        if "error" in event:
            raise ModelFailed(f"The model server reported an error: {describe(event['error'])}")
        choices = event.get("choices")
        text = choices[0]["delta"].get("content") if choices else None
        if text:
            return ChatGenerationChunk(message=AIMessageChunk(content=text))
        usage = event.get("usage")
        if not usage:
            return None
        tokens_in, tokens_out = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
    except (ValueError, LookupError, AttributeError, TypeError) as exc:
        raise ModelFailed("The model server sent a response we could not use.") from exc
    metadata: Any = {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "total_tokens": tokens_in + tokens_out,
    }
    return ChatGenerationChunk(
        message=AIMessageChunk(content="", usage_metadata=metadata, chunk_position="last")
    )


def describe(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "unknown")[:200]
    return str(error)[:200]

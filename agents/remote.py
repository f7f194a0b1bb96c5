"""Chat with a model behind an OpenAI-compatible API: `POST /chat/completions`, streamed.

Written straight on httpx: the request as the API documents it, the server-sent events read line
by line with `json.loads`, stream usage asked for. It does what this product needs of a remote chat
model (text in, text out, usage, errors that say what went wrong) for far less CPU than
`langchain_openai.ChatOpenAI` over the `openai` SDK, which builds typed objects for every chunk:
the app's CPU per turn at 200 sessions fell from 56 to 38 ms with it (bench/turns.py).

Each event loop keeps a connection pool (one per timeout), whose connections turns reuse: a stream
is read to the end of its body for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from typing import Any

import httpx
from langchain_core.messages import BaseMessage

from agents.errors import ModelFailed, ModelUnreachable
from agents.state import Usage
from agents.streaming import StreamingChatModel

# Room for every concurrent turn (httpx's default pool stops at 100 connections). Few are kept
# open between turns: on every request, httpcore 1.0 polls each idle connection to see whether
# its server closed it (encode/httpcore#928, open), which took a sixth of the client's CPU at 200
# turns at once with 20 kept; 8 serve a small deployment's steady traffic, and a burst opens what
# it needs. An idle connection is given up after 4 s, before uvicorn's (and so vLLM's) 5 s, which
# closes it even as a request arrives: that request would fail as "could not be reached".
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=8, keepalive_expiry=4.0)
END_OF_BODY_S = 0.5  # the wait for a stream's body to end after its `[DONE]`

ROLES = {"system": "system", "human": "user", "ai": "assistant"}
DONE = "[DONE]"  # the data of the event that ends a stream

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


async def close_pools() -> None:
    """Close this event loop's connections to providers (at shutdown)."""
    for client in _pools.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


def as_openai(messages: Iterable[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages in the API's shape (text, or content parts as LangChain keeps them)."""
    out = []
    for m in messages:
        if m.type not in ROLES:
            raise ValueError(f"a {m.type} message has no place in a chat completion request")
        out.append({"role": ROLES[m.type], "content": m.content})
    return out


class RemoteChatModel(StreamingChatModel):
    """A model of an OpenAI-compatible provider; streams, and reports usage like `LocalChatModel`."""

    base_url: str
    api_key: str = ""
    model_name: str
    max_tokens: int = 512
    timeout_s: float = 60.0
    deadline_s: float = 300.0

    @property
    def _llm_type(self) -> str:
        return "openai-compatible"

    async def stream_text(
        self, messages: Sequence[BaseMessage]
    ) -> AsyncGenerator[str | Usage, None]:
        """The answer as it streams, cut by our own caps whatever the server does: at
        `max_tokens` text events (or `CHARS_PER_TOKEN_CAP` characters a token), and at
        `deadline_s` seconds, so that an answer can neither run without bound nor outlive its
        hold."""
        url, body, headers = self._request(messages)
        cap = Cap(self.max_tokens, self.deadline_s)
        async with pool(self.timeout_s).stream("POST", url, json=body, headers=headers) as response:
            if response.status_code >= 400:
                await response.aread()
                raise refused(response)
            lines = response.aiter_lines()
            async for line in lines:
                data = event_data(line)
                if data == DONE:
                    await read_to_end(lines)
                    return
                item = parse_event(data) if data else None
                cap.check(item)
                if item is not None:
                    yield item

    def answer_items(self, messages: Sequence[BaseMessage]) -> list[str | Usage]:
        """The whole answer, without an event loop, cut by the same caps as `stream_text`."""
        url, body, headers = self._request(messages)
        with (
            httpx.Client(timeout=self.timeout_s) as client,
            client.stream("POST", url, json=body, headers=headers) as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise refused(response)
            items: list[str | Usage] = []
            cap = Cap(self.max_tokens, self.deadline_s)
            for line in response.iter_lines():
                data = event_data(line)
                if data == DONE:
                    break
                item = parse_event(data) if data else None
                cap.check(item)
                if item is not None:
                    items.append(item)
            return items

    def _request(
        self, messages: Sequence[BaseMessage]
    ) -> tuple[str, dict[str, Any], dict[str, str]]:
        """The URL, JSON body and headers of a streamed chat completion with usage."""
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": as_openai(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": self.max_tokens,
        }
        headers = bearer(self.api_key)
        return self.base_url.rstrip("/") + "/chat/completions", body, headers


CHARS_PER_TOKEN_CAP = 16  # no tokenizer makes tokens this long on average


class Cap:
    """Our own limits on one streamed answer, for servers that ignore `max_completion_tokens`
    (or trickle forever): `ModelFailed` once they are passed."""

    def __init__(self, max_tokens: int, deadline_s: float) -> None:
        self.max_tokens = max_tokens
        self.deadline = time.monotonic() + deadline_s
        self.deadline_s = deadline_s
        self.pieces = 0
        self.chars = 0

    def check(self, item: str | Usage | None) -> None:
        if isinstance(item, str):
            self.pieces += 1
            self.chars += len(item)
            if self.pieces > self.max_tokens or self.chars > self.max_tokens * CHARS_PER_TOKEN_CAP:
                raise ModelFailed(
                    f"The model server went on past the {self.max_tokens}-token limit; "
                    "the answer was cut there."
                )
        if time.monotonic() > self.deadline:
            raise ModelFailed(
                f"The model server was still writing after {self.deadline_s:.0f} s; "
                "the answer was cut there."
            )


async def read_to_end(lines: AsyncIterator[str]) -> None:
    """Read what follows a stream's `[DONE]`: its body's end, so that the connection goes back to
    the pool for the next turn (a connection left mid-body is closed). A server that writes more,
    or keeps the body open past `END_OF_BODY_S`, is hung up on: the answer is whole already."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(END_OF_BODY_S):
            async for line in lines:
                if line.strip():
                    return


def event_data(line: str) -> str | None:
    """The data of a server-sent event's line; None for blank separators, comments and other
    fields. The stream ends at `DONE`."""
    return line[5:].strip() if line.startswith("data:") else None


def bearer(api_key: str | None) -> dict[str, str]:
    """The headers that carry a provider's key (none without one)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


async def post(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    server: str = "model server",
) -> httpx.Response:
    """POST `body` as JSON to a provider; `ModelUnreachable` when the `server` cannot be reached
    or does not answer in time (its error answers are the caller's to read)."""
    try:
        return await client.post(url, json=body, headers=headers)
    except httpx.TimeoutException as exc:
        raise ModelUnreachable(f"The {server} did not answer in time.") from exc
    except httpx.HTTPError as exc:
        raise ModelUnreachable(
            f"The {server} could not be reached ({type(exc).__name__})."
        ) from exc


def refused(response: httpx.Response) -> ModelFailed:
    return ModelFailed(f"The model server answered with an error (HTTP {response.status_code}).")


def parse_event(data: str) -> str | Usage | None:
    """One streamed event: its text, or its usage; None when it has neither."""
    try:
        event = json.loads(data)
        if "error" in event:
            raise ModelFailed(f"The model server reported an error: {describe(event['error'])}")
        choices = event.get("choices")
        text = choices[0]["delta"].get("content") if choices else None
        if text:
            return str(text)
        usage = event.get("usage")
        if not usage:
            return None
        return Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"]))
    except (ValueError, LookupError, AttributeError, TypeError) as exc:
        raise ModelFailed("The model server sent a response we could not use.") from exc


def describe(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "unknown")[:200]
    return str(error)[:200]

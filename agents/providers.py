"""Chat models per catalogue entry, provider health, and what provider failures mean.

Remote providers are OpenAI-compatible APIs reached through `agents.remote.RemoteChatModel` with
stream usage on; the local model is `agents.local.LocalChatModel`. Both are LangChain chat models,
so the graph treats them alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
from langchain_core.messages import BaseMessage

from agents.catalog import Catalog, Model, Provider
from agents.errors import AgentError, ModelUnreachable
from agents.local import LocalChatModel, LocalRunner
from agents.remote import RemoteChatModel, bearer
from agents.streaming import StreamingChatModel

HEALTH_TTL_S = 15.0


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str


def chat_model(
    model: Model,
    runner: LocalRunner,
    max_tokens: int,
    timeout_s: float,
    local_temperature: float = 0.3,
    chunk_interval_s: float = 0.0,
    deadline_s: float = 300.0,
) -> StreamingChatModel:
    """A streaming LangChain chat model for `model`.

    `chunk_interval_s` lets the local model hand over text at most that often (remote providers
    stream as their server sends).
    """
    if model.provider.kind == "local":
        return LocalChatModel(
            runner=runner,
            model_name=model.name,
            max_tokens=max_tokens,
            temperature=local_temperature,
            chunk_interval_s=chunk_interval_s,
        )
    return RemoteChatModel(
        base_url=model.provider.base_url or "",
        api_key=model.provider.api_key or "",
        model_name=model.name,
        max_tokens=max_tokens,
        timeout_s=timeout_s,
        deadline_s=deadline_s,
    )


def token_counter(model: Model, runner: LocalRunner) -> Callable[[Sequence[BaseMessage]], int]:
    """Counts prompt tokens: exactly for the local model, conservatively for remote ones.

    Remote tokenizers are not available offline (tiktoken downloads its tables), so remote prompts
    are estimated at one token per three characters, which over-counts for English text.
    """
    if model.provider.kind == "local":
        return runner.count_tokens
    return estimate_tokens


def text_counter(model: Model, runner: LocalRunner) -> Callable[[str], int]:
    """Counts the tokens of an answer's text: exactly for the local model, estimated for remote
    ones (used only when a provider does not report usage, and said so under the answer)."""
    if model.provider.kind == "local":
        return runner.count_text
    return estimate_text_tokens


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    return sum(4 + estimate_text_tokens(m.text) for m in messages) + 3


def estimate_text_tokens(text: str) -> int:
    """One token per three characters, rounded up past the last: over-counts English text."""
    return len(text) // 3 + 1 if text else 0


def as_agent_error(exc: BaseException) -> AgentError | None:
    """Our error for a provider failure, or None when `exc` is not one."""
    if isinstance(exc, AgentError):
        return exc
    if isinstance(exc, httpx.TransportError):  # refused, reset, timed out, cut off mid-stream
        return ModelUnreachable(f"The model server could not be reached ({type(exc).__name__}).")
    return None


class HealthCheck:
    """Remembers each provider's last health answer for a few seconds."""

    def __init__(self, runner: LocalRunner) -> None:
        self.runner = runner
        self._cache: dict[str, tuple[float, Health]] = {}

    async def providers(self, catalog: Catalog) -> dict[str, Health]:
        """Every enabled provider's health, and why each one found unusable at run time is down."""
        enabled = [p for p in catalog.providers.values() if p.enabled]
        results = await asyncio.gather(*(self.provider(p) for p in enabled))
        health = {p.id: h for p, h in zip(enabled, results, strict=True)}
        health.update({pid: Health(False, why) for pid, why in catalog.down.items()})
        return health

    async def provider(self, provider: Provider) -> Health:
        cached = self._cache.get(provider.id)
        if cached and time.monotonic() - cached[0] < HEALTH_TTL_S:
            return cached[1]
        health = await self._check(provider)
        self._cache[provider.id] = (time.monotonic(), health)
        return health

    async def _check(self, provider: Provider) -> Health:
        if provider.kind == "local":
            if self.runner.loaded:
                return Health(True, "loaded")
            return Health(False, "not loaded")
        headers = bearer(provider.api_key)
        url = f"{(provider.base_url or '').rstrip('/')}/models"
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                response = await client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            return Health(False, f"unreachable: {type(exc).__name__}")
        if response.status_code >= 400:
            return Health(False, f"HTTP {response.status_code}")
        return Health(True, "reachable")

"""One model turn that may call tools: `POST /chat/completions` with `tools`, not streamed.

A long task's model asks for tools; this sends the conversation so far (the messages as the API
documents them: assistant turns with their `tool_calls`, `tool` results answering them by id) and
the tools' JSON schemas, and reads back the text, the tool calls and the usage. Arguments arrive
as JSON text; one that does not parse, or names a tool that was not offered, is a `ToolCall` with
`problem` set, so the task can tell the model instead of failing. Errors are the agents package's
own, as for a chat answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from agents.catalog import Model
from agents.errors import ModelFailed
from agents.remote import bearer, pool, post, refused
from agents.state import Usage


@dataclass(frozen=True)
class Tool:
    """A tool offered to the model: its name, what it does, and its parameters' JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name, "description": self.description, "parameters": self.parameters,
            },
        }  # fmt: skip


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    problem: str | None = None  # why it cannot be run as asked (bad JSON, an unknown tool)


@dataclass(frozen=True)
class Turn:
    """What the model said: its text, the tools it asked for, and the usage it reported."""

    text: str
    calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None

    def as_message(self) -> dict[str, Any]:
        """The assistant message to send back with the tools' results."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in self.calls
            ]  # fmt: skip
        return message


def result_message(call: ToolCall, content: str) -> dict[str, Any]:
    """A tool's result, answering `call`."""
    return {"role": "tool", "tool_call_id": call.id, "content": content}


async def take_turn(
    model: Model,
    messages: Sequence[dict[str, Any]],
    tools: Sequence[Tool],
    max_tokens: int,
    timeout_s: float,
) -> Turn:
    """One turn of `model` on `messages`, with `tools` offered."""
    body: dict[str, Any] = {
        "model": model.name,
        "messages": list(messages),
        "max_completion_tokens": max_tokens,
    }
    if tools:
        body |= {"tools": [t.schema() for t in tools], "tool_choice": "auto"}
    url = (model.provider.base_url or "").rstrip("/") + "/chat/completions"
    response = await post(pool(timeout_s), url, body, bearer(model.provider.api_key))
    if response.status_code >= 400:
        raise refused(response)
    return read_turn(response, {t.name for t in tools})


def read_turn(response: httpx.Response, offered: set[str]) -> Turn:
    try:
        answer = response.json()
        message = answer["choices"][0]["message"]
        text = str(message.get("content") or "")
        calls = [_call(raw, offered) for raw in message.get("tool_calls") or []]
        usage = answer.get("usage")
        reported = (
            Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"])) if usage else None
        )
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        raise ModelFailed("The model server sent a response we could not use.") from exc
    return Turn(text, calls, reported)


def _call(raw: dict[str, Any], offered: set[str]) -> ToolCall:
    function = raw["function"]
    name = str(function["name"])
    call_id = str(raw.get("id") or f"call-{name}")
    if name not in offered:
        return ToolCall(call_id, name, {}, f"There is no tool called {name!r}.")
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        return ToolCall(call_id, name, {}, "Its arguments are not valid JSON.")
    if not isinstance(arguments, dict):
        return ToolCall(call_id, name, {}, "Its arguments must be a JSON object.")
    return ToolCall(call_id, name, arguments)

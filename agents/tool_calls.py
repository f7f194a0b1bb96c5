"""One model turn that may call tools: `POST /chat/completions` with `tools`, not streamed.

A long task's model asks for tools; this sends the conversation so far (the messages as the API
documents them: assistant turns with their `tool_calls`, `tool` results answering them by id) and
the tools' JSON schemas, and reads back the text, the tool calls and the usage. Arguments arrive
as JSON text; one that does not parse, or names a tool that was not offered, is a `ToolCall` with
`problem` set, so the task can tell the model instead of failing. Errors are the agents package's
own, as for a chat answer.

The bundled local model has no tool-calling API: `take_local_turn` describes the tools in the
system prompt and reads a line `CALL <tool> {json}` from its answer as the call. A small model
follows this as well as it can; a provider's model, with real tool calls, does much better.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from agents.catalog import Model
from agents.errors import ModelFailed
from agents.local import LocalRunner
from agents.remote import bearer, pool, post, refused
from agents.state import Usage

CALL_LINE = re.compile(r"^\s*CALL\s+([A-Za-z_][A-Za-z0-9_]*)\s*(\{.*\})?\s*$", re.MULTILINE)


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


async def take_local_turn(
    runner: LocalRunner, messages: Sequence[dict[str, Any]], tools: Sequence[Tool], max_tokens: int
) -> Turn:
    """One turn of the bundled model on `messages`, the tools described in words."""
    prompt = as_local_prompt(messages, tools)
    text, usage = "", None
    async for item in runner.stream(prompt, max_tokens, temperature=0.2):
        if isinstance(item, Usage):
            usage = item
        else:
            text += item
    return read_local_turn(text, {t.name for t in tools}, usage)


def as_local_prompt(messages: Sequence[dict[str, Any]], tools: Sequence[Tool]) -> list[BaseMessage]:
    described = "\n".join(
        f"- {t.name}: {t.description} Arguments: {json.dumps(list(t.parameters['properties']))}"
        for t in tools
    )
    how = (
        f"\n\nTools you may call:\n{described}\nTo call one, answer with one line "
        'CALL <tool> {"argument": "value"} and nothing else; its answer comes back to you.'
    )
    prompt: list[BaseMessage] = []
    for m in messages:
        content = str(m.get("content") or "")
        if m["role"] == "system":
            prompt.append(SystemMessage(content + (how if tools else "")))
        elif m["role"] == "assistant":
            said = [content] + [
                f"CALL {c['function']['name']} {c['function']['arguments']}"
                for c in m.get("tool_calls") or []
            ]
            prompt.append(AIMessage("\n".join(s for s in said if s)))
        elif m["role"] == "tool":
            prompt.append(HumanMessage(f"The tool answered:\n{content}"))
        else:
            prompt.append(HumanMessage(content))
    return prompt


def read_local_turn(text: str, offered: set[str], usage: Usage | None) -> Turn:
    """The bundled model's answer: a tool call where it wrote a CALL line for an offered tool."""
    found = CALL_LINE.search(text) if offered else None
    if found is None:
        return Turn(text.strip(), [], usage)
    raw = {"id": f"local-{found.start()}", "function": {
        "name": found.group(1), "arguments": found.group(2) or "{}"}}  # fmt: skip
    return Turn(text[: found.start()].strip(), [_call(raw, offered)], usage)

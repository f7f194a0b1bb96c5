"""A model turn with tools offered, against the scripted loopback provider."""

from __future__ import annotations

import json

import pytest

from agents.catalog import Model, load_catalog
from agents.errors import ModelFailed, ModelUnreachable
from agents.tool_calls import Tool, result_message, take_turn
from settings import ROOT
from tests.fakes.openai_server import FakeOpenAI

CALCULATOR = Tool(
    "calculator", "Evaluate arithmetic.",
    {"type": "object", "properties": {"expression": {"type": "string"}},
     "required": ["expression"]},
)  # fmt: skip


@pytest.fixture
def model(fake: FakeOpenAI) -> Model:
    catalog = load_catalog(
        ROOT / "models.toml", {"VLLM_BASE_URL": fake.base_url}.get, "smollm2-135m"
    )
    return catalog.get("vllm-llama-3.1-8b")


def call(call_id: str, name: str, arguments: str) -> dict[str, object]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


async def test_a_turn_asks_for_tools_and_then_answers_with_their_results(
    fake: FakeOpenAI, model: Model
) -> None:
    fake.script = [
        {"content": "", "tool_calls": [call("c1", "calculator", '{"expression": "6 * 7"}')]},
        {"content": "It is 42."},
    ]
    messages: list[dict[str, object]] = [{"role": "user", "content": "What is 6 times 7?"}]
    first = await take_turn(model, messages, [CALCULATOR], 256, 5)
    assert [(c.id, c.name, c.arguments, c.problem) for c in first.calls] == [
        ("c1", "calculator", {"expression": "6 * 7"}, None)
    ]
    assert first.usage is not None and first.usage.input_tokens > 0
    messages += [first.as_message(), result_message(first.calls[0], "42")]
    second = await take_turn(model, messages, [CALCULATOR], 256, 5)
    assert second.text == "It is 42." and second.calls == []
    sent = fake.requests[-1]
    assert sent["tools"] == [CALCULATOR.schema()] and sent["tool_choice"] == "auto"
    assert sent["messages"][1]["tool_calls"][0]["function"] == {
        "name": "calculator", "arguments": json.dumps({"expression": "6 * 7"}),
    }  # fmt: skip
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "c1", "content": "42"}


async def test_a_call_the_task_cannot_run_is_marked_not_raised(
    fake: FakeOpenAI, model: Model
) -> None:
    fake.script = [
        {"tool_calls": [call("a", "calculator", "{not json"), call("b", "rm_rf", "{}"),
                        call("c", "calculator", "[1, 2]")]},
    ]  # fmt: skip
    turn = await take_turn(model, [{"role": "user", "content": "go"}], [CALCULATOR], 64, 5)
    assert [c.problem for c in turn.calls] == [
        "Its arguments are not valid JSON.",
        "There is no tool called 'rm_rf'.",
        "Its arguments must be a JSON object.",
    ]


async def test_provider_failures_are_the_agents_errors(fake: FakeOpenAI, model: Model) -> None:
    with fake.behaving(mode="error"), pytest.raises(ModelFailed, match="HTTP 500"):
        await take_turn(model, [{"role": "user", "content": "go"}], [CALCULATOR], 64, 5)
    with fake.behaving(delay_s=2), pytest.raises(ModelUnreachable, match="in time"):
        await take_turn(model, [{"role": "user", "content": "go"}], [CALCULATOR], 64, 0.5)

"""The task graph on scripted model turns: plan, act with tools, observe, finish; loops stopped;
a run stopped at a step's gate resumes at that step without doing the earlier ones again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agents import tasks
from agents.tool_calls import Tool, ToolCall, Turn

TOOLS = [Tool("calculator", "Arithmetic.", {"type": "object", "properties": {}})]


class Stop(Exception):
    """A gate that shut (the worker's `Paused`)."""


class Scripted:
    """Model turns from a script; tools answer `<tool>(<args>)`; gates shut where told."""

    def __init__(self, turns: list[Turn], attempt: int = 1, stop_at: int | None = None) -> None:
        self.turns = turns
        self.attempt = attempt
        self.tools: Sequence[Tool] = TOOLS
        self.stop_at = stop_at
        self.actions: list[tuple[int, str]] = []  # (n, what)

    def gate(self, n: int) -> None:
        if n == self.stop_at:
            raise Stop(n)

    async def think(
        self, n: int, since: int, messages: list[dict[str, Any]], tools: Sequence[Tool]
    ) -> Turn:
        self.gate(n)
        self.actions.append((n, "think"))
        return self.turns.pop(0)

    async def use(self, n: int, since: int, call: ToolCall) -> str:
        self.gate(n)
        self.actions.append((n, call.name))
        return f"{call.name}({call.arguments})"


def ask(expression: str, call_id: str = "c") -> Turn:
    return Turn("", [ToolCall(call_id, "calculator", {"expression": expression})])


def three_steps() -> list[Turn]:
    return [
        Turn("1. Add\n2. Multiply\n3. Subtract"),
        ask("1+2"), Turn("It is 3."),
        ask("3*4"), Turn("It is 12."),
        ask("12-5"), Turn("It is 7."),
        Turn("The answer is 7."),
    ]  # fmt: skip


async def run(graph: tasks.Task, steps: Scripted, run_id: str, start: bool = True) -> Any:
    given = tasks.start_state("compute", ["a.csv"]) if start else None
    return await graph.ainvoke(
        given, tasks.config_of(run_id), context=tasks.TaskContext(steps), durability="sync"
    )


async def test_a_three_step_task_plans_acts_observes_and_finishes() -> None:
    graph = tasks.build(InMemorySaver())
    steps = Scripted(three_steps())
    state = await run(graph, steps, "r1")
    assert [i["title"] for i in state["plan"]] == ["Add", "Multiply", "Subtract"]
    assert [i["status"] for i in state["plan"]] == ["done", "done", "done"]
    assert [i["summary"] for i in state["plan"]] == ["It is 3.", "It is 12.", "It is 7."]
    assert [c["result"] for c in state["calls"]] == [
        "calculator({'expression': '1+2'})",
        "calculator({'expression': '3*4'})",
        "calculator({'expression': '12-5'})",
    ]
    assert state["answer"] == "The answer is 7."
    # Every action numbered once, in order: 8 model turns and 3 tool calls.
    assert [n for n, _ in steps.actions] == list(range(1, 12))
    assert state["n"] == 11


async def test_a_plan_the_model_did_not_write_is_the_goal_itself() -> None:
    graph = tasks.build(InMemorySaver())
    state = await run(graph, Scripted([Turn("Sure!"), Turn("Computed."), Turn("Done.")]), "r2")
    assert [(i["title"], i["status"]) for i in state["plan"]] == [("compute", "done")]


async def test_a_repeated_tool_call_is_reminded_then_its_step_fails() -> None:
    graph = tasks.build(InMemorySaver())
    steps = Scripted(
        [Turn("1. Add"), ask("1+2", "a"), ask("1+2", "b"), ask("1+2", "c"), Turn("Gave up.")]
    )
    state = await run(graph, steps, "r3")
    results = [c["result"] for c in state["calls"]]
    assert results[0] == "calculator({'expression': '1+2'})"
    assert results[1].startswith("refused: you asked for exactly this already")
    assert state["plan"][0]["status"] == "failed"
    assert "same arguments again" in state["plan"][0]["summary"]
    assert [w for _, w in steps.actions].count("calculator") == 1  # run once, not three times
    assert state["answer"] == "Gave up."


async def test_a_step_that_never_ends_is_stopped_after_its_rounds() -> None:
    graph = tasks.build(InMemorySaver())
    asks = [ask(f"{i}+1", str(i)) for i in range(tasks.MOST_ROUNDS)]
    state = await run(graph, Scripted([Turn("1. Count"), *asks, Turn("Over.")]), "r4")
    assert state["plan"][0]["status"] == "failed"
    assert len(state["calls"]) == tasks.MOST_ROUNDS - 1


@pytest.mark.parametrize("stop_at", [1, 2, 3, 6, 11])
async def test_a_run_stopped_at_a_gate_resumes_there_without_redoing_anything(
    stop_at: int,
) -> None:
    graph = tasks.build(InMemorySaver())
    script = three_steps()
    first = Scripted(script, attempt=1, stop_at=stop_at)
    with pytest.raises(Stop):
        await run(graph, first, "r5")
    second = Scripted(script, attempt=2)  # the same script, from where the first stopped
    state = await run(graph, second, "r5", start=False)
    done = [n for n, _ in first.actions] + [n for n, _ in second.actions]
    assert done == list(range(1, 12))  # each action once, across the two attempts
    assert state["answer"] == "The answer is 7."
    assert state["attempt"] == 2

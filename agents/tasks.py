"""A long task as a LangGraph graph: plan, act with tools, observe, finish.

    plan ──> act ──> tools ──> act ... ──> finish
              └──(step done: next step)──┘

- `plan`: the model breaks the goal into a few steps (one line each); a plan it does not write is
  one step, the goal itself.
- `act`: the model works on the current step with the tools offered; it asks for tools, or says
  what the step found (the step is done, the next one starts from what the earlier ones found).
- `tools`: the tools asked for run, their answers go back to the model.
- `finish`: the model writes the answer from what the steps found.

Each node is one step of the checkpointed run (the worker runs the graph with durability "sync":
a node's result is saved before the next starts), so a run whose process died resumes at the node
it was in. Every model call and every tool call is the `n`th metered action of the run, and the
`Steps` given in the runtime context carry it out: they hold its credits under an id derived from
the run, `n` and the attempt, and may refuse (the run pauses: the node runs again on resume).
Nothing here knows of the ledger, the database or the chat.

A model that loops is stopped: a tool call asked again with the same arguments is answered with a
reminder, and a third time (or past `MOST_ROUNDS` model turns on one step) the step fails and the
task goes on with the next.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from agents.tool_calls import Tool, ToolCall, Turn, result_message

MOST_STEPS = 5  # in a plan
MOST_ROUNDS = 6  # model turns on one step
SAME_CALL_LIMIT = 2  # asked a third time with the same arguments: the step fails
TITLE_CHARS = 200

Status = Literal["planned", "done", "failed"]


class Item(TypedDict):
    """One step of the plan: what it is, how it went, what it found."""

    title: str
    status: Status
    summary: str


class Call(TypedDict):
    """One tool call, as the person sees it."""

    item: int
    n: int
    tool: str
    arguments: str
    result: str


class TaskState(TypedDict, total=False):
    goal: str
    files: list[str]
    plan: list[Item]
    current: int  # the step worked on (== len(plan): all done)
    messages: list[dict[str, Any]]  # the model's conversation on the current step
    pending: list[dict[str, Any]]  # tool calls asked for and not yet answered
    calls: list[Call]
    n: int  # metered actions so far
    rounds: int  # model turns on the current step
    attempt: int  # the attempt of the run that saved this state
    answer: str


class Steps(Protocol):
    """A run's metered actions. `n` numbers the action within the run; `since` is the attempt
    that saved the state it follows (attempts from there on may have begun it already)."""

    @property
    def attempt(self) -> int: ...

    @property
    def tools(self) -> Sequence[Tool]: ...

    async def think(
        self, n: int, since: int, messages: list[dict[str, Any]], tools: Sequence[Tool]
    ) -> Turn: ...

    async def use(self, n: int, since: int, call: ToolCall) -> str: ...


@dataclass(frozen=True)
class TaskContext:
    steps: Steps


Task = CompiledStateGraph[TaskState, TaskContext, TaskState, TaskState]


def start_state(goal: str, files: Sequence[str]) -> TaskState:
    return {
        "goal": goal, "files": list(files), "plan": [], "current": 0, "messages": [],
        "pending": [], "calls": [], "n": 0, "rounds": 0, "attempt": 0, "answer": "",
    }  # fmt: skip


def build(checkpointer: BaseCheckpointSaver | None) -> Task:
    graph = StateGraph(TaskState, context_schema=TaskContext)
    graph.add_node("plan", plan)
    graph.add_node("act", act)
    graph.add_node("tools", use_tools)
    graph.add_node("finish", finish)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", after_step, ["act", "finish"])
    graph.add_conditional_edges("act", after_act, ["tools", "act", "finish"])
    graph.add_conditional_edges("tools", after_step, ["act", "finish"])
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer, name="task")


def after_act(state: TaskState) -> str:
    return "tools" if state.get("pending") else after_step(state)


def after_step(state: TaskState) -> str:
    return "act" if state["current"] < len(state["plan"]) else "finish"


async def plan(state: TaskState, runtime: Runtime[TaskContext]) -> dict[str, Any]:
    steps = runtime.context.steps
    n = state["n"] + 1
    turn = await steps.think(n, state["attempt"], planning(state, steps.tools), [])
    items: list[Item] = [
        {"title": title, "status": "planned", "summary": ""} for title in read_plan(turn.text)
    ] or [{"title": state["goal"][:TITLE_CHARS], "status": "planned", "summary": ""}]
    return {"plan": items, **_next({**state, "plan": items}, 0), "n": n,
            "attempt": steps.attempt}  # fmt: skip


async def act(state: TaskState, runtime: Runtime[TaskContext]) -> dict[str, Any]:
    steps = runtime.context.steps
    n, rounds = state["n"] + 1, state["rounds"] + 1
    turn = await steps.think(n, state["attempt"], state["messages"], steps.tools)
    if turn.calls and rounds < MOST_ROUNDS:
        return {
            "n": n, "rounds": rounds, "attempt": steps.attempt,
            "messages": [*state["messages"], turn.as_message()],
            "pending": [asdict(c) for c in turn.calls],
        }  # fmt: skip
    if turn.calls:
        found = f"Stopped: {MOST_ROUNDS} model turns without finishing this step."
        return _end_item(state, "failed", found, n, steps.attempt)
    return _end_item(state, "done", turn.text.strip() or "(nothing said)", n, steps.attempt)


async def use_tools(state: TaskState, runtime: Runtime[TaskContext]) -> dict[str, Any]:
    steps = runtime.context.steps
    n, current = state["n"], state["current"]
    messages, calls = list(state["messages"]), list(state["calls"])
    asked = Counter(_key(c["tool"], c["arguments"]) for c in calls if c["item"] == current)
    for raw in state["pending"]:
        call = ToolCall(**raw)
        arguments = json.dumps(call.arguments, sort_keys=True, ensure_ascii=False)
        key = _key(call.name, arguments)
        if asked[key] >= SAME_CALL_LIMIT:
            found = f"Stopped: the model asked for {call.name} with the same arguments again."
            return {**_end_item(state, "failed", found, n, steps.attempt), "calls": calls}
        if asked[key]:
            answer = (
                "refused: you asked for exactly this already; its answer is above. Use it, or "
                "say what this step found without calling a tool."
            )
        else:
            n += 1
            answer = await steps.use(n, state["attempt"], call)
        asked[key] += 1
        messages.append(result_message(call, answer))
        calls.append({"item": current, "n": n, "tool": call.name, "arguments": arguments,
                      "result": answer})  # fmt: skip
    return {"messages": messages, "calls": calls, "pending": [], "n": n, "attempt": steps.attempt}


async def finish(state: TaskState, runtime: Runtime[TaskContext]) -> dict[str, Any]:
    steps = runtime.context.steps
    n = state["n"] + 1
    turn = await steps.think(n, state["attempt"], concluding(state), [])
    answer = turn.text.strip() or "\n\n".join(i["summary"] for i in state["plan"])
    return {"answer": answer, "n": n, "attempt": steps.attempt}


def _key(tool: str, arguments: str) -> str:
    return f"{tool}\x00{arguments}"


def _end_item(
    state: TaskState, status: Status, summary: str, n: int, attempt: int
) -> dict[str, Any]:
    items = list(state["plan"])
    current = state["current"]
    items[current] = {**items[current], "status": status, "summary": summary}
    return {"plan": items, **_next({**state, "plan": items}, current + 1), "n": n,
            "attempt": attempt}  # fmt: skip


def _next(state: TaskState, current: int) -> dict[str, Any]:
    """Start work on step `current` (past the last: none left)."""
    messages = working(state, current) if current < len(state["plan"]) else []
    return {"current": current, "messages": messages, "pending": [], "rounds": 0}


def read_plan(text: str) -> list[str]:
    """The steps of a plan the model wrote, one per numbered or bulleted line."""
    found = []
    for line in text.splitlines():
        if m := re.match(r"\s*(?:\d{1,2}[.)]|[-*•])\s+(.+)", line):
            found.append(m.group(1).strip()[:TITLE_CHARS])
    return found[:MOST_STEPS]


def _context(state: TaskState) -> str:
    files = ", ".join(state["files"]) or "none"
    return f"Task: {state['goal']}\nFiles given: {files}"


def planning(state: TaskState, tools: Sequence[Tool]) -> list[dict[str, Any]]:
    names = ", ".join(t.name for t in tools)
    return [
        {"role": "system", "content":
            f"You plan work for an assistant that can use these tools: {names}. Write a plan of "
            f"1 to {MOST_STEPS} short steps, one per line, numbered 1., 2., ... and nothing else. "
            "Simple tasks need one step."},
        {"role": "user", "content": _context(state)},
    ]  # fmt: skip


def working(state: TaskState, current: int) -> list[dict[str, Any]]:
    items = state["plan"]
    plan_text = "\n".join(f"{i + 1}. {item['title']}" for i, item in enumerate(items))
    done = "\n".join(
        f"- Step {i + 1} ({item['status']}): {item['summary']}" for i, item in enumerate(items)
        if i < current
    )  # fmt: skip
    return [
        {"role": "system", "content":
            "You carry out one step of a task. Call the tools when they help (each call's answer "
            "comes back to you). When the step is done, say in a few sentences what it found or "
            "did, and call no tool."},
        {"role": "user", "content":
            f"{_context(state)}\nPlan:\n{plan_text}\n"
            f"{'Found so far:' + chr(10) + done + chr(10) if done else ''}"
            f"Now do step {current + 1}: {items[current]['title']}"},
    ]  # fmt: skip


def concluding(state: TaskState) -> list[dict[str, Any]]:
    found = "\n".join(
        f"Step {i + 1}, {item['title']} ({item['status']}): {item['summary']}"
        for i, item in enumerate(state["plan"])
    )
    return [
        {"role": "system", "content":
            "Write the answer to the task for the person who asked, from what its steps found. "
            "Say plainly what could not be done."},
        {"role": "user", "content": f"{_context(state)}\n\nWhat the steps found:\n{found}"},
    ]  # fmt: skip


def config_of(run_id: str) -> Any:
    """The checkpointer's thread of run `run_id` (apart from every chat's)."""
    return {"configurable": {"thread_id": f"task:{run_id}"}}

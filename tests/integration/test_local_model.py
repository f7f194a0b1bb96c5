"""The bundled SmolLM2 through the production path: graph, checkpointer, in-process runner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from agents import graph as conversation
from agents.checkpoints import open_checkpointer
from agents.errors import ModelFailed
from agents.local import LocalChatModel, LocalRunner, bundled_model_path
from agents.state import TurnContext, Usage

CONTEXT = 2048  # small, so that a long conversation must be trimmed to fit


@pytest.fixture(scope="module")
def runner() -> Iterator[LocalRunner]:
    local = LocalRunner(bundled_model_path(), n_ctx=CONTEXT, n_threads=2)
    yield local
    local.close()


def context(runner: LocalRunner, max_tokens: int = 24) -> TurnContext:
    return TurnContext(
        model=LocalChatModel(runner=runner, max_tokens=max_tokens, temperature=0.0),
        context_length=CONTEXT,
        max_output_tokens=max_tokens,
        count_tokens=runner.count_tokens,
        system_prompt="You are a helpful assistant.",
    )


async def run_turn(graph, ctx: TurnContext, text: str, thread: str) -> tuple[str, Usage]:  # type: ignore[no-untyped-def]
    parts, usage = [], None
    async for item in conversation.stream(graph, ctx, HumanMessage(text), thread):
        if isinstance(item, Usage):
            usage = item
        else:
            parts.append(item)
    assert usage is not None
    return "".join(parts), usage


def test_the_model_ships_in_a_package() -> None:
    path = bundled_model_path()
    assert path.suffix == ".gguf" and "site-packages" in str(path)
    assert path.stat().st_size > 50_000_000


async def test_memory_survives_a_new_graph_on_the_same_database(
    runner: LocalRunner, database_url: str, tmp_path: Path
) -> None:
    thread = str(uuid.uuid4())
    async with open_checkpointer(database_url, tmp_path) as saver:
        first = conversation.build(saver)
        answer1, usage1 = await run_turn(first, context(runner), "My name is Ada.", thread)
    assert answer1 and usage1.output_tokens > 0
    async with open_checkpointer(database_url, tmp_path) as saver:  # as after a restart
        second = conversation.build(saver)
        state = await second.aget_state({"configurable": {"thread_id": thread}})
        assert [m.text for m in state.values["messages"]] == ["My name is Ada.", answer1]
        _, usage2 = await run_turn(second, context(runner), "What is my name?", thread)
    assert usage2.input_tokens > usage1.input_tokens + usage1.output_tokens


async def test_a_long_conversation_still_gets_answers(runner: LocalRunner, tmp_path: Path) -> None:
    thread = str(uuid.uuid4())
    async with open_checkpointer(f"sqlite+aiosqlite:///{tmp_path}/x.db", tmp_path) as saver:
        graph = conversation.build(saver)
        filler = "Tell me about the history of bridges and tunnels in great detail. " * 8
        past = []
        for i in range(60):  # about 12,000 tokens of history: six times the context window
            past += [HumanMessage(f"{i}: {filler}"), AIMessage(f"{i}: {filler}")]
        await graph.aupdate_state(
            {"configurable": {"thread_id": thread}}, {"messages": past}, as_node="respond"
        )
        history_tokens = runner.count_tokens(past)
        assert history_tokens > 5 * CONTEXT
        answer, usage = await run_turn(graph, context(runner), "Say hello.", thread)
    assert answer.strip()
    assert usage.input_tokens + 24 <= CONTEXT


async def test_a_failed_local_model_is_reloaded_for_the_next_message() -> None:
    broken = LocalRunner(bundled_model_path(), n_ctx=CONTEXT, n_threads=2)
    await broken.start()
    llm = broken.load()

    def explode(*args: object, **kwargs: object) -> Iterator[int]:
        raise RuntimeError("llama.cpp decode failed")
        yield 0

    llm.generate = explode  # the model's state breaks mid-service
    model = LocalChatModel(runner=broken, max_tokens=8, temperature=0.0)
    with pytest.raises(ModelFailed, match="decode failed"):
        await model.ainvoke([HumanMessage("hi")])
    assert not broken.loaded  # noticed: dropped, to be loaded afresh
    broken.count_tokens([HumanMessage("hi")])  # trimming counts on the event loop's thread...
    assert broken.loaded_on is not None and broken.loaded_on.startswith(
        "local-model"
    )  # ...not there
    answer = await model.ainvoke([HumanMessage("hi")])
    assert answer.text and answer.usage_metadata and answer.usage_metadata["output_tokens"] > 0
    assert broken.loaded
    broken.close()


async def test_a_prompt_larger_than_the_context_is_refused(runner: LocalRunner) -> None:
    model = LocalChatModel(runner=runner, max_tokens=8)
    with pytest.raises(ModelFailed, match="does not fit"):
        await model.ainvoke([HumanMessage("word " * 3000)])


def test_sync_invoke_reports_usage(runner: LocalRunner) -> None:
    answer = LocalChatModel(runner=runner, max_tokens=8, temperature=0.0).invoke("Hello")
    assert answer.text
    assert answer.usage_metadata is not None
    assert 1 <= answer.usage_metadata["output_tokens"] <= 8
    assert answer.usage_metadata["input_tokens"] == runner.count_tokens([HumanMessage("Hello")])

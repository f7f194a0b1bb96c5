"""The conversation graph: one node that answers the new message from the thread's memory.

Memory lives in the checkpointer, keyed by the Chainlit thread id, so reopening a thread restores what
the model knows. The model is chosen per turn and passed in the runtime context.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from typing import Any, cast

from langchain_core.messages import AIMessage, BaseMessage, RemoveMessage, SystemMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from agents.memory import fit, upper_bound
from agents.providers import as_agent_error
from agents.state import State, TurnContext, Usage, as_answer


async def respond(state: State, runtime: Runtime[TurnContext]) -> dict[str, Any]:
    """Answer `question` given the conversation so far, streaming the text (and the usage) to the
    graph's `custom` stream as it comes."""
    ctx = runtime.context
    question = state.get("question")
    if question is None:
        return {}
    items: list[str | Usage] = []
    async for item in ctx.model.stream_text(make_prompt(ctx, state.get("messages", []), question)):
        items.append(item)
        runtime.stream_writer(item)
    kept = state.get("remember_as") or question
    return {"messages": [kept, as_answer(items)], "question": None, "remember_as": None}


def make_prompt(
    ctx: TurnContext, memory: Sequence[BaseMessage], question: BaseMessage
) -> list[BaseMessage]:
    """What the model is sent: the system prompt, as much recent memory as fits, the question."""
    history = [SystemMessage(ctx.system_prompt), *memory, question]
    return fit(history, ctx.context_length - ctx.max_output_tokens, ctx.count_tokens)


async def prompt_for(
    graph: Conversation, ctx: TurnContext, question: BaseMessage, thread_id: str, edited: bool
) -> tuple[list[BaseMessage], BaseMessage]:
    """The prompt the next turn will send, read from the thread's memory (to price it first), and
    the question as memory will keep it.

    A question whose id memory holds already is an edit or a replay. Edited (`edited`: the UI has
    removed everything after it): memory forgets it and all after it, so the model and the page
    agree. Replayed: it is kept as a new message under a new id."""
    if edited:
        memory = await rewind(graph, thread_id, str(question.id))
        return make_prompt(ctx, memory, question), question
    config: Any = {"configurable": {"thread_id": thread_id}}
    memory = (await graph.aget_state(config)).values.get("messages", [])
    if any(m.id == question.id for m in memory):
        question = question.model_copy(update={"id": str(uuid.uuid4())})
    return make_prompt(ctx, memory, question), question


async def rewind(graph: Conversation, thread_id: str, message_id: str) -> list[BaseMessage]:
    """Memory forgets the message `message_id` and all after it (an edit: the page dropped
    them); what it keeps. Nothing changes when it does not hold that message."""
    config: Any = {"configurable": {"thread_id": thread_id}}
    memory: list[BaseMessage] = (await graph.aget_state(config)).values.get("messages", [])
    at = next((i for i, m in enumerate(memory) if m.id == message_id), None)
    if at is None:
        return memory
    rewound = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *memory[:at]]
    await graph.aupdate_state(config, {"messages": rewound}, as_node="respond")
    return memory[:at]


async def forget(graph: Conversation, thread_id: str) -> None:
    """Delete a thread's memory (the thread itself was deleted)."""
    if graph.checkpointer is not None and not isinstance(graph.checkpointer, bool):
        await graph.checkpointer.adelete_thread(thread_id)


def most_input_tokens(
    prompt: Sequence[BaseMessage], context_length: int, max_output_tokens: int
) -> int:
    """No more tokens than this can reach a model for `prompt` (no tokenizer needed)."""
    return min(upper_bound(prompt), context_length - max_output_tokens)


Conversation = CompiledStateGraph[State, TurnContext, State, State]


def build(checkpointer: BaseCheckpointSaver | None) -> Conversation:
    graph = StateGraph(State, context_schema=TurnContext)
    graph.add_node("respond", respond)
    graph.add_edge(START, "respond")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer, name="conversation")


async def stream(
    graph: Conversation,
    context: TurnContext,
    question: BaseMessage,
    thread_id: str,
    remember_as: BaseMessage | None = None,
) -> AsyncGenerator[str | Usage, None]:
    """Run one turn: the answer's text as it streams, then the usage if the provider reported it.
    Memory keeps `remember_as` in place of `question` when it is given (an image's question).

    Provider failures surface as `AgentError`s. If the consumer stops early (the user pressed stop),
    the question and the part of the answer already streamed are kept in the thread's memory.
    """
    config: Any = {"configurable": {"thread_id": thread_id}}
    delivered: list[str] = []
    finished = False
    items = graph.astream(
        {"question": question, "remember_as": remember_as},
        config,
        context=context,
        stream_mode="custom",  # what `respond` writes: text pieces and the usage
        durability="exit",  # one checkpoint write, after the answer: none competes with decoding
    )
    try:
        async with aclosing(cast(AsyncGenerator[Any, None], items)):
            async for item in items:
                if isinstance(item, str):
                    delivered.append(item)
                    yield item
                elif isinstance(item, Usage):
                    yield item
        finished = True
    except Exception as exc:
        error = as_agent_error(exc)
        if error is None:
            raise
        raise error from exc
    finally:
        if not finished and delivered:
            partial = AIMessage(content="".join(delivered))
            update = {
                "messages": [remember_as or question, partial], "question": None,
                "remember_as": None,
            }  # fmt: skip
            await graph.aupdate_state(config, update, as_node="respond")

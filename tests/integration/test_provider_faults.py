"""A remote provider that errors, stalls, drops or is down: clear errors, memory intact, recovery.

The model is reached through the production path (catalogue -> RemoteChatModel -> graph) against a
loopback OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agents import graph as conversation
from agents.catalog import load_catalog
from agents.errors import AgentError, ModelFailed, ModelUnreachable
from agents.local import LocalRunner
from agents.providers import chat_model, token_counter
from agents.state import TurnContext, Usage
from settings import ROOT
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def context_for(base_url: str, timeout_s: float = 5.0) -> TurnContext:
    catalog = load_catalog(ROOT / "models.toml", {"VLLM_BASE_URL": base_url}.get, "smollm2-135m")
    model = catalog.get("vllm-llama-3.1-8b")
    runner = LocalRunner(ROOT / "unused.gguf", 2048, 1)  # never loaded: the model is remote
    return TurnContext(
        model=chat_model(model, runner, max_tokens=64, timeout_s=timeout_s),
        context_length=model.context_length,
        max_output_tokens=64,
        count_tokens=token_counter(model, runner),
        system_prompt="be brief",
    )


async def turn(graph, context: TurnContext, text: str, thread: str) -> tuple[str, Usage | None]:  # type: ignore[no-untyped-def]
    parts: list[str] = []
    usage = None
    async for item in conversation.stream(graph, context, HumanMessage(text), thread):
        if isinstance(item, Usage):
            usage = item
        else:
            parts.append(item)
    return "".join(parts), usage


async def memory(graph, thread: str) -> list[str]:  # type: ignore[no-untyped-def]
    state = await graph.aget_state({"configurable": {"thread_id": thread}})
    return [m.text for m in state.values.get("messages", [])]


async def test_a_healthy_provider_streams_with_usage(fake: FakeOpenAI) -> None:
    graph = conversation.build(InMemorySaver())
    thread = str(uuid.uuid4())
    text, usage = await turn(graph, context_for(fake.base_url), "hello", thread)
    assert text == fake.reply
    assert usage == Usage(input_tokens=3, output_tokens=len(fake.reply.split(" ")))
    assert fake.requests[-1]["stream_options"] == {"include_usage": True}
    assert await memory(graph, thread) == ["hello", fake.reply]


async def test_http_500_is_a_clear_error_and_memory_is_unchanged(fake: FakeOpenAI) -> None:
    graph = conversation.build(InMemorySaver())
    thread = str(uuid.uuid4())
    fake.mode = "error"
    with pytest.raises(ModelFailed, match="HTTP 500"):
        await turn(graph, context_for(fake.base_url), "hello", thread)
    assert await memory(graph, thread) == []
    fake.mode = "ok"  # the provider recovers: the next message works
    text, _ = await turn(graph, context_for(fake.base_url), "hello again", thread)
    assert text == fake.reply
    assert await memory(graph, thread) == ["hello again", fake.reply]


async def test_a_stalled_provider_times_out(fake: FakeOpenAI) -> None:
    fake.mode, fake.delay_s = "ok", 3.0
    graph = conversation.build(InMemorySaver())
    with pytest.raises(ModelUnreachable, match="could not be reached"):
        await turn(graph, context_for(fake.base_url, timeout_s=0.5), "hi", str(uuid.uuid4()))


async def test_a_provider_that_is_down_is_unreachable() -> None:
    server = FakeOpenAI().start()
    base_url = server.base_url
    server.stop()
    graph = conversation.build(InMemorySaver())
    with pytest.raises(ModelUnreachable):
        await turn(graph, context_for(base_url), "hi", str(uuid.uuid4()))


async def test_a_dropped_stream_keeps_what_was_delivered(fake: FakeOpenAI) -> None:
    fake.mode, fake.drop_after = "drop", 3
    graph = conversation.build(InMemorySaver())
    thread = str(uuid.uuid4())
    delivered: list[str] = []
    with pytest.raises(AgentError):
        async for item in conversation.stream(
            graph, context_for(fake.base_url), HumanMessage("hi"), thread
        ):
            assert not isinstance(item, Usage)
            delivered.append(item)
    assert "".join(delivered) == "Hello from the "
    assert await memory(graph, thread) == ["hi", "Hello from the "]


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("garble", "sent a response we could not use"),
        ("report", "reported an error: model overloaded"),
    ],
)
async def test_a_broken_or_error_event_mid_stream_fails_clearly(
    fake: FakeOpenAI, mode: str, said: str
) -> None:
    fake.mode, fake.drop_after = mode, 2
    graph = conversation.build(InMemorySaver())
    thread = str(uuid.uuid4())
    delivered: list[str] = []
    with pytest.raises(ModelFailed, match=said):
        async for item in conversation.stream(
            graph, context_for(fake.base_url), HumanMessage("hi"), thread
        ):
            delivered.append(str(item))
    assert "".join(delivered) == "Hello from "
    assert await memory(graph, thread) == ["hi", "Hello from "]


def test_the_model_also_answers_without_an_event_loop(fake: FakeOpenAI) -> None:
    model = context_for(fake.base_url).model
    answer = model.invoke([HumanMessage("hi")])
    assert answer.text == fake.reply
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["output_tokens"] == len(fake.reply.split(" "))
    fake.mode = "error"
    with pytest.raises(ModelFailed, match="HTTP 500"):
        model.invoke([HumanMessage("hi")])


async def test_without_an_event_loop_too_our_caps_cut_an_answer(fake: FakeOpenAI) -> None:
    """`invoke` (LangChain's call without an event loop) reads the same stream: a provider that
    writes past the token limit, or past our deadline, is cut there too."""
    model = context_for(fake.base_url).model
    with fake.behaving(mode="endless"), pytest.raises(ModelFailed, match="64-token limit"):
        await asyncio.wait_for(asyncio.to_thread(model.invoke, [HumanMessage("go on")]), 20)
    slow = model.model_copy(update={"max_tokens": 10_000, "deadline_s": 0.5})
    with (
        fake.behaving(mode="endless", token_delay_s=0.05),
        pytest.raises(ModelFailed, match=r"still writing after [01] s"),
    ):
        await asyncio.wait_for(asyncio.to_thread(slow.invoke, [HumanMessage("slowly")]), 20)


async def test_a_provider_that_ignores_the_token_limit_is_cut_at_it(fake: FakeOpenAI) -> None:
    """It writes on past `max_completion_tokens` (64 here): we stop reading at 64 pieces of
    text and say so, and the delivered part is kept, as for any answer stopped part-way."""
    graph = conversation.build(InMemorySaver())
    thread = str(uuid.uuid4())
    parts: list[str] = []
    with fake.behaving(mode="endless"), pytest.raises(ModelFailed, match="64-token limit"):
        async for item in conversation.stream(
            graph, context_for(fake.base_url), HumanMessage("go on forever"), thread
        ):
            if isinstance(item, str):
                parts.append(item)
    assert len(parts) == 64
    assert fake.requests[-1]["max_completion_tokens"] == 64
    assert (await memory(graph, thread))[-1] == "".join(parts)


async def test_a_provider_that_trickles_is_cut_at_our_deadline(fake: FakeOpenAI) -> None:
    """Each piece comes within the read timeout, but the answer as a whole passes our deadline:
    it is cut there, so that no answer outlives its hold."""
    catalog = load_catalog(
        ROOT / "models.toml", {"VLLM_BASE_URL": fake.base_url}.get, "smollm2-135m"
    )
    model = chat_model(
        catalog.get("vllm-llama-3.1-8b"), LocalRunner(ROOT / "unused.gguf", 2048, 1),
        max_tokens=10_000, timeout_s=5, deadline_s=0.5,
    )  # fmt: skip
    parts: list[str] = []
    with (
        fake.behaving(mode="endless", token_delay_s=0.05),
        pytest.raises(ModelFailed, match=r"still writing after [01] s"),
    ):
        async for item in model.stream_text([HumanMessage("slowly")]):
            parts.append(str(item))
    assert 3 <= len(parts) <= 15


async def test_turns_one_after_another_reuse_one_connection(fake: FakeOpenAI) -> None:
    """A turn reads its stream to the end of the body (past `[DONE]`), so its connection goes
    back to the pool and the next turn skips the connect (and, to a real provider, the TLS
    handshake)."""
    model = context_for(fake.base_url).model
    for question in ("one", "two", "three"):
        said = [item async for item in model.stream_text([HumanMessage(question)])]
        assert "".join(str(s) for s in said if isinstance(s, str)) == fake.reply
    assert len(fake.requests) == 3
    assert len(fake.connections) == 1


async def test_a_server_slow_to_end_its_stream_after_done_does_not_hold_the_turn(
    fake: FakeOpenAI,
) -> None:
    """After `[DONE]` the answer is whole: a server that keeps the body open is hung up on soon,
    not waited for until the read timeout."""
    model = context_for(fake.base_url, timeout_s=30).model
    with fake.behaving(linger_s=20):
        started = time.monotonic()
        said = [item async for item in model.stream_text([HumanMessage("and then?")])]
        took = time.monotonic() - started
    assert "".join(str(s) for s in said if isinstance(s, str)) == fake.reply
    assert took < 5


async def test_a_connection_idle_near_a_servers_keep_alive_timeout_is_not_reused(
    fake: FakeOpenAI,
) -> None:
    """uvicorn, and vLLM on it, close a connection idle for 5 s, even as a request arrives on it
    (the request then fails: "could not be reached"). A connection idle for 4.5 s is not reused:
    the next turn opens a new one."""
    model = context_for(fake.base_url).model
    said = [item async for item in model.stream_text([HumanMessage("one")])]
    assert said
    await asyncio.sleep(4.5)
    said = [item async for item in model.stream_text([HumanMessage("two")])]
    assert said and len(fake.requests) == 2
    assert len(fake.connections) == 2

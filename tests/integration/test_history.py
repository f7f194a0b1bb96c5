"""Chat history on SQLite and PostgreSQL: threads, steps, JSON and tags come back as they went in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from chainlit.context import init_http_context
from chainlit.types import Pagination, ThreadFilter
from chainlit.user import User

from storage.engine import create_engine
from storage.history import ChatHistory
from storage.migrate import upgrade_async


@pytest.fixture
async def history(database_url: str) -> AsyncIterator[ChatHistory]:
    await upgrade_async(database_url)
    await upgrade_async(database_url)  # a second run is a no-op
    engine = create_engine(database_url)
    layer = ChatHistory(engine)
    yield layer
    await engine.dispose()


async def save(history: ChatHistory, step_dict: dict) -> None:
    """Write a step as the app does outside a websocket session (no queueing)."""
    init_http_context()
    await history.create_step(step_dict)  # type: ignore[arg-type]


def step(thread_id: str, kind: str, text: str, **extra: object) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "threadId": thread_id,
        "name": "user" if kind == "user_message" else "SmolLM2",
        "type": kind,
        "output": text,
        "streaming": False,
        "createdAt": f"2026-11-21T10:00:{len(text):02d}.000Z",
        "metadata": {"favorite": False, "cost": {"credits": 3}},
        **extra,
    }


async def test_a_conversation_comes_back_whole(history: ChatHistory) -> None:
    alice = await history.create_user(
        User(identifier="alice@example.com", metadata={"role": "user"})
    )
    assert alice is not None and alice.metadata == {"role": "user"}
    thread_id = str(uuid.uuid4())
    await history.update_thread(
        thread_id,
        name="Greetings",
        user_id=alice.id,
        metadata={"chat_settings": {"model": "smollm2-135m"}},
        tags=["demo", "first"],
    )
    await save(history, step(thread_id, "user_message", "hi"))
    reply = step(thread_id, "assistant_message", "hello there", generation={"tokens": 5})
    reply["feedback"] = {"value": 1}  # the UI sends keys that are not columns
    await save(history, reply)

    thread = await history.get_thread(thread_id)
    assert thread is not None
    assert thread["userIdentifier"] == "alice@example.com"
    assert thread["metadata"] == {"chat_settings": {"model": "smollm2-135m"}}
    assert thread["tags"] == ["demo", "first"]
    assert [s["output"] for s in thread["steps"]] == ["hi", "hello there"]
    assert thread["steps"][1]["metadata"] == {"favorite": False, "cost": {"credits": 3}}
    assert thread["steps"][1]["generation"] == {"tokens": 5}
    assert await history.get_thread_author(thread_id) == "alice@example.com"


async def test_metadata_updates_merge(history: ChatHistory) -> None:
    user = await history.create_user(User(identifier="bob@example.com"))
    assert user is not None
    thread_id = str(uuid.uuid4())
    await history.update_thread(thread_id, user_id=user.id, metadata={"a": 1, "b": 2})
    await history.update_thread(thread_id, metadata={"b": None, "c": 3})
    thread = await history.get_thread(thread_id)
    assert thread is not None and thread["metadata"] == {"a": 1, "c": 3}


async def test_users_see_only_their_own_threads(history: ChatHistory) -> None:
    alice = await history.create_user(User(identifier="alice@example.com"))
    mallory = await history.create_user(User(identifier="mallory@example.com"))
    assert alice is not None and mallory is not None
    mine = str(uuid.uuid4())
    await history.update_thread(mine, name="mine", user_id=alice.id)
    await save(history, step(mine, "user_message", "secret"))

    listed = await history.list_threads(Pagination(first=20), ThreadFilter(userId=mallory.id))
    assert listed.data == []
    listed = await history.list_threads(Pagination(first=20), ThreadFilter(userId=alice.id))
    assert [t["id"] for t in listed.data] == [mine]
    assert await history.get_thread_author(mine) != mallory.identifier


async def test_unknown_thread_is_none(history: ChatHistory) -> None:
    assert await history.get_thread(str(uuid.uuid4())) is None


async def test_a_step_is_one_statement_once_its_thread_is_written(
    history: ChatHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    statements: list[str] = []
    execute = history.execute_sql

    async def counted(query: str, parameters: dict) -> object:
        statements.append(" ".join(query.split()[:3]))
        return await execute(query, parameters)

    monkeypatch.setattr(history, "execute_sql", counted)
    thread_id = str(uuid.uuid4())
    await save(history, step(thread_id, "user_message", "first"))  # unknown: looked up, created
    assert statements == [
        'SELECT "metadata" FROM',
        "INSERT INTO threads",
        "INSERT INTO steps",
    ]
    statements.clear()
    await save(history, step(thread_id, "assistant_message", "second"))
    assert statements == ["INSERT INTO steps"]

    await history.delete_thread(thread_id)
    assert await history.get_thread(thread_id) is None
    statements.clear()
    await save(history, step(thread_id, "user_message", "again"))  # forgotten when deleted
    assert statements[0] == 'SELECT "metadata" FROM'
    thread = await history.get_thread(thread_id)
    assert thread is not None and [s["output"] for s in thread["steps"]] == ["again"]

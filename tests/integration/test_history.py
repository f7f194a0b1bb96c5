"""Chat history on SQLite and PostgreSQL: threads, steps, JSON and tags come back as they went in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import chainlit as cl
import pytest
from chainlit.context import init_http_context
from chainlit.types import Pagination, ThreadFilter
from chainlit.user import User
from sqlalchemy import event, text

from storage.element_files import ElementFiles, owned_file
from storage.engine import create_engine
from storage.history import WRITE_DELAY_S, ChatHistory
from storage.images import Folder
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


@contextmanager
def transactions_on(history: ChatHistory) -> Iterator[list[object]]:
    """The transactions begun on the history's engine in the block (their connections)."""
    begun: list[object] = []

    def counted(conn: object) -> None:
        begun.append(conn)

    event.listen(history.engine.sync_engine, "begin", counted)
    try:
        yield begun
    finally:
        event.remove(history.engine.sync_engine, "begin", counted)


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


async def test_concurrent_writes_commit_together_and_reads_see_them(
    history: ChatHistory,
) -> None:
    user = await history.create_user(User(identifier="carol@example.com"))
    assert user is not None
    thread_id = str(uuid.uuid4())
    await history.update_thread(thread_id, name="busy", user_id=user.id)
    init_http_context()
    texts = [f"message {n}" for n in range(40)]
    with transactions_on(history) as begun:
        await asyncio.gather(
            *(history.create_step(step(thread_id, "user_message", t)) for t in texts)
        )  # type: ignore[arg-type]
    assert len(begun) < 10, begun  # 40 steps: a handful of group commits, not 40
    thread = await history.get_thread(thread_id)
    assert thread is not None
    assert sorted(s["output"] for s in thread["steps"]) == sorted(texts)


async def test_writes_wait_for_their_group_and_shutting_down_commits_what_waits(
    history: ChatHistory,
) -> None:
    """What the person sees goes first: writes queued over a short while (as Chainlit queues a
    turn's steps, without waiting for them) commit together, `WRITE_DELAY_S` after the first.
    Shutting down commits what still waits."""
    thread_id = str(uuid.uuid4())
    await history.update_thread(thread_id, name="t")
    init_http_context()
    steps = [step(thread_id, "user_message", f"step {n}") for n in range(4)]
    written = []
    with transactions_on(history) as begun:
        for s in steps:  # one every 5 ms
            written.append(asyncio.create_task(history.create_step(s)))  # type: ignore[arg-type]
            await asyncio.sleep(WRITE_DELAY_S / 10)
        await asyncio.gather(*written)
    assert len(begun) == 1

    waiting = [asyncio.create_task(history.create_step(step(thread_id, "x", "late")))]  # type: ignore[arg-type]
    await asyncio.sleep(0)  # queued, not committed
    async with history.engine.connect() as conn:
        count = 'SELECT count(*) FROM steps WHERE "threadId" = :t'
        assert (await conn.execute(text(count), {"t": thread_id})).scalar() == 4
    await history.flush()
    async with history.engine.connect() as conn:
        assert (await conn.execute(text(count), {"t": thread_id})).scalar() == 5
    assert waiting[0].done()


async def test_a_failing_write_in_a_group_loses_only_itself(history: ChatHistory) -> None:
    thread_id = str(uuid.uuid4())
    await history.update_thread(thread_id, name="t")
    insert = (
        'INSERT INTO steps ("id", "threadId", "name", "type", "streaming") '
        "VALUES (:id, :t, :n, :k, false)"
    )
    s1, s2, s3, nowhere = (str(uuid.uuid4()) for _ in range(4))
    writes = [
        history.execute_sql(insert, {"id": s1, "t": thread_id, "n": "a", "k": "user_message"}),
        history.execute_sql(insert, {"id": s2, "t": nowhere, "n": "b", "k": "x"}),  # no thread
        history.execute_sql(insert, {"id": s1, "t": thread_id, "n": "dup", "k": "x"}),  # taken
        history.execute_sql(insert, {"id": s3, "t": thread_id, "n": "c", "k": "user_message"}),
    ]
    assert await asyncio.gather(*writes) == [1, None, None, 1]
    rows = await history.execute_sql('SELECT "name" FROM steps ORDER BY "name"', {})
    assert rows == [{"name": "a"}, {"name": "c"}]


async def test_a_group_that_cannot_commit_fails_its_writers_and_blocks_nothing(
    history: ChatHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread_id = str(uuid.uuid4())
    await history.update_thread(thread_id, name="before")
    run_writes = history._run_writes

    async def broken(group: list) -> list:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(history, "_run_writes", broken)
    rename = 'UPDATE threads SET "name" = :n WHERE "id" = :id'
    with pytest.raises(RuntimeError, match="disk on fire"):
        await history.execute_sql(rename, {"n": "lost", "id": thread_id})
    read = 'SELECT "name" FROM threads WHERE "id" = :id'
    assert await asyncio.wait_for(history.execute_sql(read, {"id": thread_id}), 5) == [
        {"name": "before"}
    ]
    monkeypatch.setattr(history, "_run_writes", run_writes)
    assert await history.execute_sql(rename, {"n": "after", "id": thread_id}) == 1
    assert await history.execute_sql(read, {"id": thread_id}) == [{"name": "after"}]


async def test_a_write_whose_caller_gives_up_still_lands_before_later_reads(
    history: ChatHistory,
) -> None:
    thread_id = str(uuid.uuid4())
    await history.update_thread(thread_id, name="before")
    rename = 'UPDATE threads SET "name" = :n WHERE "id" = :id'
    caller = asyncio.create_task(history.execute_sql(rename, {"n": "after", "id": thread_id}))
    await asyncio.sleep(0)  # queued
    caller.cancel()
    read = 'SELECT "name" FROM threads WHERE "id" = :id'
    assert await history.execute_sql(read, {"id": thread_id}) == [{"name": "after"}]


async def test_element_files_are_kept_with_their_thread_for_its_owner_only(
    database_url: str, tmp_path: Path
) -> None:
    await upgrade_async(database_url)
    engine = create_engine(database_url)
    shelf = Folder(tmp_path / "files")
    history = ChatHistory(engine, live_authors=frozenset({"Credits"}), files=ElementFiles(shelf))
    try:
        ann = await history.create_user(User(identifier="ann@example.com"))
        assert ann is not None
        thread_id = str(uuid.uuid4())
        await history.update_thread(thread_id, name="Photos", user_id=ann.id)
        asked = step(thread_id, "user_message", "what is this?")
        notice = {**step(thread_id, "assistant_message", "balance"), "name": "Credits"}
        await save(history, asked)
        await save(history, notice)
        photo = cl.Image(name="red.jpg", content=b"\xff\xd8 a photo", mime="image/jpeg")
        photo.for_id, photo.thread_id = asked["id"], thread_id
        chart = cl.File(name="chart.json", content=b"{}", mime="application/json")
        chart.for_id, chart.thread_id = notice["id"], thread_id
        await history.create_element(photo)
        await history.create_element(chart)

        thread = await history.get_thread(thread_id)
        assert thread is not None
        [kept] = thread["elements"] or []
        assert kept["name"] == "red.jpg" and kept["url"].startswith("/element-files/")
        key = kept["objectKey"]
        assert "/" in key and "red.jpg" in key  # Chainlit's key names the file...
        assert not list((tmp_path / "files").rglob("*red.jpg*"))  # ...our shelf never does
        mine = await owned_file(engine, shelf, key, "ann@example.com")
        assert mine is not None and mine.data == b"\xff\xd8 a photo" and mine.mime == "image/jpeg"
        assert await owned_file(engine, shelf, key, "bob@example.com") is None
        assert await owned_file(engine, shelf, key + "x", "ann@example.com") is None
    finally:
        await engine.dispose()

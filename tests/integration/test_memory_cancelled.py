"""The model's memory when turns are cancelled mid-query (Stop pressed while the checkpointer reads
or writes): later turns still read and write it, on SQLite and PostgreSQL. (On PostgreSQL one
shared connection was left mid-command, and every later turn failed with "another command is
already in progress".)"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from agents import graph as conversation
from agents.checkpoints import open_checkpointer


async def test_cancelled_reads_and_writes_leave_the_memory_usable(
    database_url: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    async with open_checkpointer(database_url, tmp_path) as saver:
        graph = conversation.build(saver)
        config: Any = {"configurable": {"thread_id": "stopped-often"}}
        for i in range(200):
            question, answer = HumanMessage(f"q{i}", id=f"q{i}"), AIMessage(f"a{i}", id=f"a{i}")
            work = (
                graph.aget_state(config)
                if i % 2
                else graph.aupdate_state(
                    config, {"messages": [question, answer]}, as_node="respond"
                )
            )
            task = asyncio.ensure_future(work)
            for _ in range(rng.randrange(12)):  # cancelled after 0-11 steps of the loop: mid-query
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await graph.aupdate_state(
            config, {"messages": [HumanMessage("last", id="last")]}, as_node="respond"
        )
        state = await asyncio.wait_for(graph.aget_state(config), timeout=10)
        assert state.values["messages"][-1].content == "last"


async def test_a_connection_left_mid_command_is_not_used_again(fresh_postgres_url: str) -> None:
    """What a turn cancelled between sending a query and reading its result leaves behind (seen
    in the app under a storm of Stop presses): a connection with a command still in flight. The
    memory goes on working: that connection is discarded, not handed to the next turn."""
    async with open_checkpointer(fresh_postgres_url, Path(".")) as saver:
        graph = conversation.build(saver)
        config: Any = {"configurable": {"thread_id": "left-mid-command"}}
        await graph.aupdate_state(
            config, {"messages": [HumanMessage("hi", id="1")]}, as_node="respond"
        )
        pool = saver.conn
        with contextlib.suppress(asyncio.CancelledError):
            async with pool.connection() as conn:  # type: ignore[union-attr]
                conn.pgconn.send_query(b"SELECT pg_sleep(0.2)")  # sent, its result never read
                raise asyncio.CancelledError  # the turn is stopped right there
        state = await asyncio.wait_for(graph.aget_state(config), timeout=10)
        assert state.values["messages"][0].content == "hi"

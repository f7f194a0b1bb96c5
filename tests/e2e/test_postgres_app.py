"""The app process on PostgreSQL: chat, reopen the thread, and the history and memory come back."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.client import ChatSession, login, messages, steps
from tests.e2e.process import running_app
from tests.e2e.test_app import tokens

pytestmark = pytest.mark.e2e
ADMIN = ("pg-admin@example.com", "pg-admin-password")


@pytest.fixture(scope="module")
def postgres_app(request: pytest.FixtureRequest) -> Iterator[str]:
    database = request.getfixturevalue("module_postgres_url")
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-e2e-pg-"))
    with running_app(
        data_dir, DATABASE_URL=database, ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1]
    ) as base_url:
        yield base_url


async def test_a_thread_resumes_on_postgres(postgres_app: str) -> None:
    cookies = await login(postgres_app, *ADMIN)
    first = ChatSession(postgres_app, cookies)
    await first.connect()
    turn1 = await first.send("Remember the number 42. Reply with one word.")
    await first.close()
    assert first.thread_id
    in1, out1 = tokens(steps(turn1)[0]["output"])

    again = ChatSession(postgres_app, cookies, thread_id=first.thread_id)
    await again.connect()
    resumed = await again.wait_for("resume_thread")
    outputs = [s["output"] for s in resumed["steps"] if s["type"].endswith("message")]
    assert outputs == ["Remember the number 42. Reply with one word.", messages(turn1)[0]["output"]]
    turn2 = await again.send("Which number?")
    await again.close()
    in2, _ = tokens(steps(turn2)[0]["output"])
    assert in2 >= in1 + out1  # the model's memory came back from PostgreSQL's checkpointer

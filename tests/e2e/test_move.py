"""Moving to PostgreSQL, as a self-hoster does it: a SQLite install with people, turns and threads
is moved with `python -m storage move-to-postgres`, and the app started on PostgreSQL with the
same data directory finds everyone's balance, login, chats and the model's memory; `verify` passes
with the same pinned key and the same root. Before that: starting on a new PostgreSQL database
with the old data directory neither crashes nor leaves an administrator nobody can sign in as.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from auth import identities
from auth.identities import Identity
from credits.receipts import check_receipt, receipt
from credits.store import Ledger
from credits.verify import verify
from settings import ROOT, Settings
from storage.engine import create_engine
from storage.ledger import ledger_from_settings
from storage.move import MARKER
from tests.conftest import _fresh_postgres
from tests.e2e.client import ChatSession, login, messages
from tests.e2e.process import app_environment, running_app
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.e2e
ADMIN = ("admin@example.com", "admin-password-for-tests")
PERSON = ("mover@example.com", "a-long-enough-password")
REMOTE = "vllm-llama-3.1-8b"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    yield from _fresh_postgres()


async def open_ledger(data_dir: Path, database_url: str | None = None) -> Ledger:
    book = ledger_from_settings(Settings(data_dir=data_dir, database_url=database_url))
    await book.start(background=False, read_only=True)
    return book


async def chat_as(base_url: str, who: tuple[str, str], thread_id: str | None = None) -> ChatSession:
    chat = ChatSession(base_url, await login(base_url, *who), thread_id=thread_id)
    await chat.connect()
    return chat


def run_cli(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=app_environment(data_dir), input=stdin,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


async def test_a_sqlite_install_moves_to_postgres_whole(
    fake: FakeOpenAI, fresh_postgres_url: str, second_postgres_url: str
) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-move-"))
    common = dict(
        ADMIN_EMAIL=ADMIN[0], VLLM_BASE_URL=fake.base_url, CHECKPOINT_EVERY_S="1",
        CHECKPOINT_EVERY_ENTRIES="2",
    )  # fmt: skip

    # 1. A SQLite install in use: an administrator (generated password) and a person chat.
    with running_app(data_dir, **common) as base_url:
        admin_password = (data_dir / "initial-admin-password").read_text().strip()
        added = run_cli(
            data_dir, "-m", "auth", "add", PERSON[0], "--password-stdin", stdin=PERSON[1]
        )
        assert added.returncode == 0, added.stderr
        person = await chat_as(base_url, PERSON)
        await person.change_settings({"model": REMOTE})
        await person.turn("Remember the word heliotrope.")
        await person.turn("And the number 7.")
        thread_id = person.thread_id
        await person.close()
        admin = await chat_as(base_url, (ADMIN[0], admin_password))
        await admin.change_settings({"model": REMOTE})
        await admin.turn("Hello.")
        await admin.close()
        # The sign-in records move too: a provider identity, an invitation, a standing.
        engine = create_engine(f"sqlite+aiosqlite:///{data_dir / 'app.db'}")
        await identities.attach(
            engine, Identity("https://login.acme.com", "s-1", None, "Sam", "acme")
        )
        await engine.dispose()
        for args in (("invite", "zoe@example.com"), ("logout", PERSON[0])):
            done = run_cli(data_dir, "-m", "auth", *args)
            assert done.returncode == 0, done.stderr
    assert thread_id

    book = await open_ledger(data_dir)
    before = await verify(book)
    balances = {who: await book.balance(who) for who in (ADMIN[0], PERSON[0])}
    await book.close()
    assert before.ok and before.entries == 8 and before.checkpoints >= 3, before
    assert balances[PERSON[0]].available < 1_000_000  # they spent something

    # 2. Started on a new PostgreSQL database with the old data directory: no crash, a warning,
    #    and the administrator it creates can sign in with the password it shows.
    with running_app(data_dir, DATABASE_URL=second_postgres_url, **common) as base_url:
        log = (data_dir / "app.log").read_text()
        assert "holds a SQLite install (2 people" in log
        assert "python -m storage move-to-postgres" in log
        shown = (data_dir / "initial-admin-password").read_text().strip()
        assert shown != admin_password and f"Password: {shown}" in log
        await login(base_url, ADMIN[0], shown)
    (data_dir / "initial-admin-password").write_text(admin_password + "\n")  # the SQLite one

    # 3. The move, into a new database: the ledger verifies there with the same root.
    moved = run_cli(data_dir, "-m", "storage", "move-to-postgres", "--to", fresh_postgres_url)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert f"the ledger's root is the same on PostgreSQL: {before.root}" in moved.stdout
    assert (data_dir / MARKER).exists()
    again = run_cli(data_dir, "-m", "storage", "move-to-postgres", "--to", fresh_postgres_url)
    assert again.returncode == 2 and "already has" in again.stderr  # never into a used database

    engine = create_engine(fresh_postgres_url)
    async with engine.connect() as conn:
        for table in ("identities", "invitations", "account_standing"):
            count = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            assert count == 1, table
    await engine.dispose()

    book = await open_ledger(data_dir, fresh_postgres_url)
    try:
        after = await verify(book)
        assert after.ok and (after.root, after.entries) == (before.root, before.entries)
        for who, balance in balances.items():
            assert await book.balance(who) == balance
        welcome = next(t for t in await book.history(PERSON[0]) if t.code == "welcome")
        proof = await receipt(book, welcome.transfer_id)
        assert check_receipt(proof, book.pinned_key)
    finally:
        await book.close()

    # 4. The app on PostgreSQL: same people, balances, chats and memory; no second bonus.
    fake.requests.clear()
    with running_app(data_dir, DATABASE_URL=fresh_postgres_url, **common) as base_url:
        log = (data_dir / "app.log").read_text()
        assert "holds a SQLite install" not in log and "First run: created" not in log
        resumed = await chat_as(base_url, PERSON, thread_id=thread_id)
        shown = await resumed.wait_for("resume_thread")
        said = [s["output"] for s in shown["steps"] if s["type"] == "user_message"]
        assert said == ["Remember the word heliotrope.", "And the number 7."]
        await resumed.turn("Which word?")
        await resumed.close()
        sent = [m["content"] for m in fake.requests[-1]["messages"][1:]]
        assert sent[0] == "Remember the word heliotrope." and sent[-1] == "Which word?"
        greeted = await chat_as(base_url, (ADMIN[0], admin_password))
        [greeting] = messages(greeted.events)
        await greeted.close()
        assert "You have **" in greeting["output"] and "been given" not in greeting["output"]
        async with httpx.AsyncClient() as http:
            health = (await http.get(base_url + "/healthz")).json()
        assert health["database"]["detail"] == "postgresql"

    book = await open_ledger(data_dir, fresh_postgres_url)
    try:
        welcomes = [t for t in await book.history(PERSON[0]) if t.code == "welcome"]
        assert len(welcomes) == 1
        assert (await verify(book)).ok
        assert (await book.balance(PERSON[0])).held == 0
    finally:
        await book.close()

"""People press Stop at every moment, edit and replay their messages, delete threads: through the
real app process, as the browser does it.

- A storm of Stop presses 0-40 ms after sending, from one session: afterwards another person is
  answered, nothing stays held, and `verify` passes (SQLite here; PostgreSQL below). Again with the
  app's garbage collector off and answers that never end by themselves: every stopped answer's
  provider stream is hung up at once, by our own closing, not whenever a collection comes.
- An edited message gets a new answer, charged as a new turn, and the model's memory is rewound to
  match the page. A replayed message id is answered and charged like any message, never free.
- Deleting a thread deletes the model's memory of it.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from credits.ledger import Kind
from credits.store import Ledger
from credits.verify import verify
from settings import Settings
from storage.ledger import ledger_from_settings
from tests.credits.test_cancellation import held_soon
from tests.e2e.client import ChatSession, login, messages, streamed_text
from tests.e2e.conftest import RunningApp, app_on_fake, ledger_beside, new_user, open_chat
from tests.e2e.process import running_app
from tests.e2e.test_metering import REMOTE, remote_chat
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.e2e
PRESSES = 60


async def stop_storm(chat: ChatSession, presses: int, seed: int, within_s: float = 0.04) -> None:
    """Send, then press Stop 0-`within_s` s later, `presses` times; each time wait for the task's
    end."""
    rng = random.Random(seed)
    for i in range(presses):
        start = await chat.emit_message(f"Storm message {i}: tell me a long story.")
        await asyncio.sleep(rng.uniform(0, within_s))
        await chat.sio.emit("stop")
        await chat.wait_for("task_end", start, timeout=60)


async def test_a_storm_of_stop_presses_freezes_nothing(app: RunningApp, ledger: Ledger) -> None:
    user, chat = await remote_chat(app)
    try:
        with app.fake.behaving(token_delay_s=0.01):  # each answer streams for ~120 ms
            await stop_storm(chat, PRESSES, seed=1)
    finally:
        await chat.close()
    await nothing_frozen(app, ledger, user)


async def nothing_frozen(app: RunningApp, ledger: Ledger, user: str) -> None:
    """After a storm: nothing of `user` stays held, another person is answered, `verify` passes."""
    balance = await held_soon(ledger, user, 0, seconds=15)
    assert balance.held == 0, balance
    someone, their_password = await new_user(app)
    other = await open_chat(app, someone, their_password)
    try:
        events = await asyncio.wait_for(other.turn("Are you still there?"), timeout=60)
    finally:
        await other.close()
    assert streamed_text(events)
    report = await verify(ledger)
    assert report.ok, report.problems


def without_collector() -> dict[str, str]:
    """Settings that start the app with its garbage collector off (a `sitecustomize` on its path):
    what a stopped turn holds is then let go by our own closing or never."""
    folder = Path(tempfile.mkdtemp(prefix="creditchat-no-gc-"))
    (folder / "sitecustomize.py").write_text("import gc\n\ngc.disable()\n")
    return {"PYTHONPATH": str(folder)}


async def every_stream_ended(fake: FakeOpenAI, seconds: float = 3.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if fake.streaming == 0:
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def app_without_collector() -> Iterator[RunningApp]:
    with app_on_fake(**without_collector()) as running:
        yield running


async def test_stopped_answers_let_go_at_once_without_the_collector(
    app_without_collector: RunningApp,
) -> None:
    app = app_without_collector
    user, chat = await remote_chat(app)
    try:
        # Answers that run until the client hangs up (or, 10 s later, our own output cap).
        with app.fake.behaving(mode="endless", token_delay_s=0.02):
            await stop_storm(chat, PRESSES, seed=3, within_s=0.3)  # most land mid-answer
            ended = await every_stream_ended(app.fake)
            stops = sum(name == "task_end" for name, _ in chat.events)
            assert ended, f"answers go on to {app.fake.open}; {stops} task ends for {PRESSES}"
    finally:
        await chat.close()
    assert app.fake.hung_up > 0  # some Stop presses came mid-answer
    async with ledger_beside(app.data_dir) as ledger:
        await nothing_frozen(app, ledger, user)


async def stream_open(fake: FakeOpenAI, question: str, seconds: float = 30.0) -> None:
    """Wait until the model answers `question` (its stream is open)."""
    for _ in range(int(seconds / 0.02)):
        if question[:40] in fake.open:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{question!r} was never answered; open: {fake.open}")


async def test_stop_then_send_stops_the_answer_it_was_pressed_for(app: RunningApp) -> None:
    """Stop pressed mid-answer and the next message sent at once: the first answer stops, the
    second is answered in full (Chainlit's Stop says "Task manually stopped" before it cancels
    the session's task, and the message sent meanwhile must not become that task)."""
    _, chat = await remote_chat(app)
    first, second = "First question: tell me a story.", "Second question: and another?"
    try:
        with app.fake.behaving(token_delay_s=0.1):  # each answer streams for ~1 s
            app.fake.cut.clear()
            start = await chat.emit_message(first)
            await stream_open(app.fake, first)
            await chat.sio.emit("stop")
            await chat.emit_message(second)
            await chat.wait_until(  # the second question answered in full
                lambda events: app.fake.reply in [m.get("output") for m in messages(events)],
                start, timeout=30,
            )  # fmt: skip
            assert await every_stream_ended(app.fake)
    finally:
        await chat.close()
    assert app.fake.cut == [first[:40]]  # and the first one's answer stopped


async def test_stop_stops_the_answer_to_an_edited_message(app: RunningApp, ledger: Ledger) -> None:
    """An edit is answered as its own task, which Stop cancels (Chainlit answers an edit inside
    the socket event, out of Stop's reach)."""
    user, chat = await remote_chat(app)
    question = str(uuid.uuid4())
    try:
        await chat.turn("What is the capital of France?", message_id=question)
        with app.fake.behaving(mode="endless", token_delay_s=0.02):
            start = await chat.emit_message(
                "Tell me everything about Italy.", message_id=question, edit=True
            )
            await stream_open(app.fake, "Tell me everything about Italy.")
            await chat.sio.emit("stop")
            await chat.wait_for("task_end", start, timeout=60)
            assert await every_stream_ended(app.fake)
            shown = streamed_text(chat.events[start:]).split()
    finally:
        await chat.close()
    assert len(shown) < 100, f"the answer went on after Stop: {len(shown)} words"
    balance = await held_soon(ledger, user, 0, seconds=15)
    assert balance.held == 0, balance


async def test_a_stop_right_after_an_edit_leaves_page_and_memory_agreeing(app: RunningApp) -> None:
    """Stop pressed at once after an edit stops its answer only: the model's memory drops what
    the page dropped (everything from the edited message on), as an edit answered in full does."""
    _, chat = await remote_chat(app)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        await chat.turn("What is the capital of France?", message_id=first)
        await chat.turn("And of Spain?", message_id=second)
        start = await chat.emit_message(
            "What is the capital of Italy?", message_id=first, edit=True
        )
        await chat.sio.emit("stop")
        await chat.wait_for("task_end", start, timeout=60)
        deleted = {d["id"] for n, d in chat.events[start:] if n == "delete_message"}
        assert second in deleted  # the page dropped what followed the edited message
        app.fake.requests.clear()
        await chat.turn("Which river runs through it?")
        sent = [m["content"] for m in app.fake.requests[-1]["messages"][1:]]
        assert "And of Spain?" not in sent and "What is the capital of France?" not in sent, sent
    finally:
        await chat.close()


async def test_an_edited_message_is_answered_anew_and_memory_follows_the_page(
    app: RunningApp, ledger: Ledger
) -> None:
    user, chat = await remote_chat(app)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        await chat.turn("What is the capital of France?", message_id=first)
        await chat.turn("And of Spain?", message_id=second)
        charged_before = await turns_charged(ledger, user)
        assert len(charged_before) == 2

        start = await chat.emit_message(
            "What is the capital of Italy?", message_id=first, edit=True
        )
        await chat.wait_for("task_end", start)
        await chat.wait_for_badge(start)
        edited = chat.events[start:]
        deleted = {d["id"] for n, d in edited if n == "delete_message"}
        assert second in deleted  # the page dropped everything after the edited message
        assert streamed_text(edited)  # and the edited question got a new answer

        charged = await turns_charged(ledger, user)
        assert len(charged) == 3 and all(t.amount > 0 for t in charged)  # a new, paid turn
        assert len({t.hold for t in charged}) == 3

        app.fake.requests.clear()
        await chat.turn("And its population?")
        sent = [m["content"] for m in app.fake.requests[-1]["messages"][1:]]
        answer = app.fake.reply
        assert sent == ["What is the capital of Italy?", answer, "And its population?"]
    finally:
        await chat.close()


async def test_a_replayed_message_id_is_never_answered_for_free(
    app: RunningApp, ledger: Ledger
) -> None:
    user, chat = await remote_chat(app)
    same = str(uuid.uuid4())
    try:
        await chat.turn("Tell me a joke.", message_id=same)
        for _ in range(3):  # the same client message id, sent again
            replayed = await chat.turn("Tell me a joke.", message_id=same)
            assert streamed_text(replayed)
    finally:
        await chat.close()
    charged = await turns_charged(ledger, user)
    assert len(charged) == 4 and all(t.amount > 0 for t in charged)
    assert len({t.hold for t in charged}) == 4


async def test_deleting_a_thread_deletes_its_model_memory(app: RunningApp) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    try:
        await chat.turn("Remember the word heliotrope.")
    finally:
        await chat.close()
    assert chat.thread_id
    assert memory_rows(app.data_dir, chat.thread_id) > 0
    async with httpx.AsyncClient(base_url=app.base_url, cookies=chat.cookies) as http:
        response = await http.request(
            "DELETE", "/project/thread", json={"threadId": chat.thread_id}
        )
    assert response.status_code == 200, response.text
    assert memory_rows(app.data_dir, chat.thread_id) == 0


def memory_rows(data_dir: Path, thread_id: str) -> int:
    with sqlite3.connect(data_dir / "checkpoints.db") as db:
        return int(
            db.execute(
                "SELECT count(*) FROM checkpoints WHERE thread_id = ?", (thread_id,)
            ).fetchone()[0]
        )


async def turns_charged(ledger: Ledger, user: str) -> list:  # type: ignore[type-arg]
    """The settlements of the user's chat turns, oldest first."""
    return [t for t in reversed(await ledger.history(user)) if t.kind is Kind.POST]


# PostgreSQL: the same storm against the app on a fresh database ----------------------------------


@pytest.fixture(scope="module")
def postgres_storm_app(request: pytest.FixtureRequest) -> Iterator[tuple[str, Path, FakeOpenAI]]:
    database = request.getfixturevalue("module_postgres_url")
    fake = FakeOpenAI().start()
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-e2e-pg-storm-"))
    try:
        with running_app(
            data_dir, DATABASE_URL=database, ADMIN_EMAIL="admin@example.com",
            ADMIN_PASSWORD="admin-password-for-tests", VLLM_BASE_URL=fake.base_url,
        ) as base_url:  # fmt: skip
            yield base_url, data_dir, fake
    finally:
        fake.stop()


@pytest.fixture
async def postgres_ledger(
    postgres_storm_app: tuple[str, Path, FakeOpenAI], request: pytest.FixtureRequest
) -> AsyncIterator[Ledger]:
    _, data_dir, _ = postgres_storm_app
    database = request.getfixturevalue("module_postgres_url")
    book = ledger_from_settings(Settings(data_dir=data_dir, database_url=database))
    await book.start(background=False)
    yield book
    await book.close()


async def test_a_storm_of_stop_presses_on_postgres(
    postgres_storm_app: tuple[str, Path, FakeOpenAI], postgres_ledger: Ledger
) -> None:
    base_url, _, fake = postgres_storm_app
    chat = ChatSession(
        base_url, await login(base_url, "admin@example.com", "admin-password-for-tests")
    )
    await chat.connect()
    await chat.change_settings({"model": REMOTE})
    try:
        with fake.behaving(token_delay_s=0.01):
            await stop_storm(chat, PRESSES, seed=2)
        balance = await held_soon(postgres_ledger, "admin@example.com", 0, seconds=15)
        assert balance.held == 0, balance
        events = await asyncio.wait_for(chat.turn("Still there?"), timeout=60)
        assert messages(events)
    finally:
        await chat.close()
    report = await verify(postgres_ledger)
    assert report.ok, report.problems


async def test_an_edit_of_the_models_answer_is_not_answered(
    app: RunningApp, ledger: Ledger
) -> None:
    """A forged edit naming the assistant's message id: no turn runs and nothing is charged."""
    user, chat = await remote_chat(app)
    try:
        events = await chat.turn("Say something.")
        [answer] = messages(events)
        charged = len(await turns_charged(ledger, user))
        start = await chat.emit_message(
            "Now answer this instead.", message_id=answer["id"], edit=True
        )
        await chat.wait_for("task_end", start)
        assert not streamed_text(chat.events[start:])
    finally:
        await chat.close()
    assert len(await turns_charged(ledger, user)) == charged

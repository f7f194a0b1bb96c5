"""The real app process, met as a browser meets it: HTTP login, then socket.io."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
import socketio

from tests.e2e.client import ChatSession, login, messages, steps, streamed_text
from tests.e2e.conftest import ADMIN, RunningApp

pytestmark = pytest.mark.e2e


def tokens(step_output: str) -> tuple[int, int]:
    match = re.search(r"([\d,]+) tokens in · ([\d,]+) tokens out", step_output)
    assert match, step_output
    return int(match[1].replace(",", "")), int(match[2].replace(",", ""))


async def session(app: RunningApp, thread_id: str | None = None) -> ChatSession:
    chat = ChatSession(app.base_url, await login(app.base_url, *ADMIN), thread_id=thread_id)
    await chat.connect()
    return chat


def test_health_reports_database_and_local_model(app: RunningApp) -> None:
    response = httpx.get(f"{app.base_url}/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "detail": "sqlite"}
    assert body["providers"]["local"] == {"ok": True, "detail": "loaded"}
    assert body["live_updates"] == {"ok": True, "detail": "this process"}


async def test_wrong_password_and_unknown_user_get_the_same_refusal(app: RunningApp) -> None:
    async with httpx.AsyncClient(base_url=app.base_url) as http:
        wrong = await http.post("/login", data={"username": ADMIN[0], "password": "nope"})
        unknown = await http.post("/login", data={"username": "who@x.org", "password": ADMIN[1]})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "access_token" not in wrong.cookies


async def test_a_socket_without_login_is_refused(app: RunningApp) -> None:
    sio = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(
            app.base_url,
            socketio_path="/ws/socket.io",
            transports=["websocket"],
            auth={"clientType": "webapp", "sessionId": str(uuid.uuid4()), "userEnv": "{}"},
        )


async def test_answers_stream_from_the_local_model_with_a_step(app: RunningApp) -> None:
    chat = await session(app)
    events = await chat.send("Say hello in one short sentence.")
    await chat.close()

    text = streamed_text(events)
    [answer] = messages(events)
    assert text.strip() and answer["output"] == text
    assert answer["name"] == "SmolLM2 135M (local)"
    [step] = steps(events)
    tokens_in, tokens_out = tokens(step["output"])
    assert tokens_in > 10 and tokens_out > 0
    stream_events = [n for n, _ in events if n in ("stream_start", "stream_token")]
    assert 1 <= len(stream_events) <= tokens_out  # coalesced, never more events than tokens


async def test_a_reopened_thread_has_its_history_and_the_model_remembers(app: RunningApp) -> None:
    first = await session(app)
    turn1 = await first.send("My favourite colour is green. Reply with one word.")
    thread_id = first.thread_id
    await first.close()
    assert thread_id
    in1, out1 = tokens(steps(turn1)[0]["output"])

    again = await session(app, thread_id=thread_id)
    resumed = await again.wait_for("resume_thread")
    outputs = [s["output"] for s in resumed["steps"] if s["type"].endswith("message")]
    assert outputs[0] == "My favourite colour is green. Reply with one word."
    assert outputs[1] == messages(turn1)[0]["output"]

    turn2 = await again.send("What did I say?")
    await again.close()
    in2, _ = tokens(steps(turn2)[0]["output"])
    # The follow-up's prompt carries the first question and answer: the model's memory came back.
    assert in2 >= in1 + out1


async def test_another_users_thread_cannot_be_opened(app: RunningApp) -> None:
    owner = await session(app)
    await owner.send("A private note.")
    thread_id = owner.thread_id
    await owner.close()

    app.add_login("mallory@example.com", "mallory-password")
    cookies = await login(app.base_url, "mallory@example.com", "mallory-password")
    async with httpx.AsyncClient(base_url=app.base_url, cookies=cookies) as http:
        response = await http.get(f"/project/thread/{thread_id}")
    assert response.status_code in (401, 403, 404)
    assert "A private note" not in response.text

    intruder = ChatSession(app.base_url, cookies, thread_id=thread_id)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await intruder.connect()


async def test_empty_and_oversized_messages(app: RunningApp) -> None:
    chat = await session(app)
    empty = await chat.send("   ")
    assert messages(empty) == [] and steps(empty) == []
    huge = await chat.send("x" * 16_001)
    await chat.close()
    [error] = [d for n, d in huge if n == "new_message" and d.get("isError")]
    assert "16,001 characters long; the limit is 16,000" in error["output"]
    assert steps(huge) == []


async def test_a_failing_provider_is_explained_and_the_next_message_works(app: RunningApp) -> None:
    chat = await session(app)
    await chat.change_settings({"model": "vllm-llama-3.1-8b"})
    with app.fake.behaving(mode="error"):
        failed = await chat.send("Hello?")
    [error] = [d for n, d in failed if n == "new_message" and d.get("isError")]
    assert "could not answer" in error["output"] and "HTTP 500" in error["output"]

    recovered = await chat.send("Hello again?")
    await chat.close()
    assert streamed_text(recovered) == app.fake.reply


async def test_a_stream_broken_part_way_says_so(app: RunningApp) -> None:
    chat = await session(app)
    await chat.change_settings({"model": "vllm-llama-3.1-8b"})
    with app.fake.behaving(mode="drop", drop_after=3):
        broken = await chat.send("Tell me something.")
    await chat.close()
    assert streamed_text(broken) == "Hello from the "  # what was delivered stays on screen
    [error] = [d for n, d in broken if n == "new_message" and d.get("isError")]
    assert "stopped part-way" in error["output"]
    assert "was not answered" not in error["output"]

"""A local model that crashes its process never takes the app down.

The app is started with a `llama_cpp` on its path whose import dies of a real segmentation fault,
as llama.cpp's AMX kernels did on a CPU they did not fit. The start-up check runs the model in a
child process, which dies; the app keeps serving the remote model, and `/healthz`, the model picker
and the log say why the local model is not offered.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.client import ChatSession, login, messages, streamed_text
from tests.e2e.process import running_app
from tests.fakes.openai_server import FakeOpenAI

CRASHING = """
import ctypes
ctypes.string_at(0)  # a read of address 0: SIGSEGV, as a native crash would
"""


@pytest.fixture(scope="module")
def crashing_app() -> Iterator[tuple[str, Path]]:
    fake = FakeOpenAI().start()
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-crash-"))
    shadow = data_dir / "shadow" / "llama_cpp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(CRASHING)
    path = os.pathsep.join(p for p in (str(shadow.parent), os.environ.get("PYTHONPATH")) if p)
    try:
        with running_app(
            data_dir, ADMIN_EMAIL="admin@example.com", ADMIN_PASSWORD="admin-password-for-tests",
            VLLM_BASE_URL=fake.base_url, PYTHONPATH=path, LOG_LEVEL="INFO",
        ) as base_url:  # fmt: skip
            yield base_url, data_dir
    finally:
        fake.stop()


def test_healthz_stays_up_and_says_why_the_local_model_is_not_offered(
    crashing_app: tuple[str, Path],
) -> None:
    base_url, data_dir = crashing_app
    response = httpx.get(base_url + "/healthz")
    assert response.status_code == 200
    body = response.json()
    local = body["providers"]["local"]
    assert local["ok"] is False
    assert "crashed the process that tried it (SIGSEGV)" in local["detail"]
    assert body["providers"]["vllm"]["ok"] is True
    assert body["default_model"] != "smollm2-135m"
    log = (data_dir / "app.log").read_text()
    assert "The local model cannot run on this machine" in log
    assert "Rebuild llama-cpp-python" in log


async def test_a_person_is_answered_by_the_remote_model_and_told_in_the_picker(
    crashing_app: tuple[str, Path],
) -> None:
    base_url, _ = crashing_app
    chat = ChatSession(
        base_url, await login(base_url, "admin@example.com", "admin-password-for-tests")
    )
    await chat.connect()
    try:
        picker = next(d for n, d in chat.events if n == "chat_settings")
        select = picker[0]
        assert "smollm2-135m" not in {item["value"] for item in select["items"]}
        assert (
            "Not offered: local (the local model cannot run on this machine"
            in select["description"]
        )
        events = await chat.turn("Hello?")
        assert streamed_text(events) == FakeOpenAI().reply
        assert messages(events, "assistant_message")
    finally:
        await chat.close()

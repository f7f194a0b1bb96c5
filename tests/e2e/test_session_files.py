"""Two app processes started from one directory: when one stops, the other's sessions keep their
files (Chainlit's shared `./.files`, deleted by whichever process stopped first, broke them)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.e2e.client import ChatSession, login
from tests.e2e.process import running_app

pytestmark = pytest.mark.e2e
ADMIN = dict(ADMIN_EMAIL="admin@example.com", ADMIN_PASSWORD="admin-password-for-tests")


async def test_a_process_stopping_leaves_the_others_session_files_alone() -> None:
    kept_dir = Path(tempfile.mkdtemp(prefix="creditchat-files-a-"))
    other_dir = Path(tempfile.mkdtemp(prefix="creditchat-files-b-"))
    with running_app(kept_dir, **ADMIN) as base_url:
        chat = ChatSession(
            base_url, await login(base_url, "admin@example.com", "admin-password-for-tests")
        )
        await chat.connect()
        try:
            [own] = list((kept_dir / "session-files").iterdir())
            assert (own / chat.session_id).is_dir()  # the badge's props were written there
            with running_app(other_dir, **ADMIN):
                pass  # started and stopped beside it, from the same directory
            assert (own / chat.session_id).is_dir()
            await chat.turn("Hello?")  # the badge's update comes through (it waits for it)
        finally:
            await chat.close()
    assert not list((other_dir / "session-files").iterdir())  # each removed its own at shutdown

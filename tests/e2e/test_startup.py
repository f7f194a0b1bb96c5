"""An app that cannot start says why and exits, rather than staying up half-started (Chainlit
logs and swallows an exception from a start-up hook)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.process import running_app

pytestmark = pytest.mark.e2e


def test_an_app_that_cannot_reach_its_database_says_why_and_exits(tmp_path: Path) -> None:
    missing = "postgresql+asyncpg://127.0.0.1:5432/no_such_database_for_creditchat"
    started = time.monotonic()
    with (
        pytest.raises(RuntimeError, match="the app exited with 3"),
        running_app(tmp_path, DATABASE_URL=missing, LEDGER_DATABASE_URL=missing),
    ):
        pass
    assert time.monotonic() - started < 60
    said = (tmp_path / "app.log").read_text()
    assert "Not starting:" in said and "no_such_database_for_creditchat" in said

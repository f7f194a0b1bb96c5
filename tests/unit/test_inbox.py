"""The payment-notification worker is supervised: if it ever ends on its own, that is logged and it
starts again; /healthz says whether it runs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from payments.inbox import Inbox


async def test_a_worker_that_ends_is_logged_and_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def tell(change: Any) -> None: ...

    inbox = Inbox(None, None, {"stripe": object()}, tell)  # type: ignore[arg-type, dict-item]
    runs = 0

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("the worker broke")
        await asyncio.sleep(3600)

    inbox._work_forever = work  # type: ignore[method-assign]
    assert not inbox.health().ok
    with caplog.at_level(logging.ERROR, "payments"):
        inbox.start()
        for _ in range(100):
            if runs == 2:
                break
            await asyncio.sleep(0.01)
    assert runs == 2
    assert "the notification worker stopped; starting it again" in caplog.text
    assert "the worker broke" in caplog.text
    assert inbox.health().ok
    await inbox.close()
    assert not inbox.health().ok and runs == 2  # closed: not started again

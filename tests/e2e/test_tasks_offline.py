"""A long task on the offline default: the bundled model drives it (as well as a 135M model can),
and it ends in a clear state, charged what its calls used."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from credits.store import Ledger
from tests.e2e.conftest import RunningApp, new_user, open_chat


async def test_the_bundled_model_carries_a_task_to_its_end(app: RunningApp, ledger: Ledger) -> None:
    user, password = await new_user(app)
    chat = await open_chat(app, user, password)
    asked = await chat.send("/task What is 17 times 23? Use the calculator.")
    [start] = [d for n, d in asked if n == "action" and d.get("name") == "task_start"]
    assert await chat.call_action(start) == 200
    run_id = str((await chat.wait_for_action("task_cancel"))["payload"]["run"])
    async with asyncio.timeout(180):
        while True:
            with sqlite3.connect(app.data_dir / "app.db") as db:
                status, spent, progress = db.execute(
                    "SELECT status, spent, progress FROM task_runs WHERE id = ?", (run_id,)
                ).fetchone()
            if status in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.2)
    shown = json.loads(progress)
    assert status == "succeeded" and shown["answer"] and shown["plan"]
    charged = [t for t in await ledger.charges(user) if t.meta.get("run") == run_id]
    assert len(charged) == shown["actions"] and spent == sum(t.amount for t in charged)
    assert {t.meta["model"] for t in charged} <= {"smollm2-135m", "calculator"}
    assert (await ledger.balance(user)).held == 0
    await chat.close()

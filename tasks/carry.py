"""Carry out one claimed run: its graph from where it stands, what the person sees kept in the run's
row and told to their open chats after every step, and how the run ends.

- The graph ends: the run `succeeded`, its answer kept.
- A step's gate shuts (`Paused`): the run is `paused` with the reason and what it needs; it is
  woken by credits arriving or its budget raised, and the step runs again.
- The model's provider fails or cannot be reached, or something of ours fails (the file store or
  the database away, a bug: logged with a reference): the run is tried again after 5 s, then
  20 s; the third failure in a row ends it `failed`, with the reason. What was done stays done and
  paid for; nothing more is held.
- Cancelled (by its owner, a lost lease, shutdown): it stops where it is; the row was changed by
  whoever stopped it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncEngine

from agents import sandbox
from agents import tasks as task_graph
from agents.catalog import Catalog
from agents.errors import ModelFailed, ModelNotAvailable, ModelUnreachable
from agents.fetch import Network
from agents.local import LocalRunner
from agents.prices import Pricing
from agents.toolbox import Toolbox
from credits.store import Ledger
from storage import runs
from storage.images import Shelf
from tasks import files
from tasks.steps import Paused, RunSteps

log = logging.getLogger("tasks")

MOST_FAILURES = 3
RESULT_CHARS = 1500  # of each tool answer, as the person sees it
Tell = Callable[[str, str], Awaitable[None]]  # (person, run id): their open chats show it again


@dataclass
class Workplace:
    """What runs are carried out with."""

    engine: AsyncEngine
    ledger: Ledger | None  # None: not metered
    graph: task_graph.Task
    catalog: Catalog
    runner: LocalRunner
    pricing: Pricing
    shelf: Shelf
    scratch: Path  # the runs' working folders
    tell: Tell
    model_id: str  # the model tasks use
    max_tokens: int
    timeout_s: float
    hold_timeout_s: int
    fetch_allowed: tuple[Network, ...] = ()
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)


async def carry_out(w: Workplace, run: runs.Run, worker: str) -> None:
    config = task_graph.config_of(run.id)
    try:
        model = w.catalog.get(run.model or w.model_id)
    except ModelNotAvailable as gone:
        await _end(w, run, worker, "failed", f"The task's model is not available: {gone}")
        return
    folder = w.scratch / run.id
    state: dict[str, Any] = {}
    try:
        folder = await files.unpack(w.shelf, run.id, run.files, w.scratch)
        steps = RunSteps(
            run, worker, w.engine, w.ledger, w.pricing, w.catalog, model, w.runner,
            Toolbox(folder, w.fetch_allowed, w.limits), w.max_tokens, w.timeout_s,
            w.hold_timeout_s,
        )  # fmt: skip
        saved = await w.graph.aget_state(config)
        given = None if saved.values else task_graph.start_state(run.goal, run.files)
        state = dict(saved.values)
        states = w.graph.astream(
            given, config, context=task_graph.TaskContext(steps), stream_mode="values",
            durability="sync",
        )  # fmt: skip
        async with aclosing(cast(AsyncGenerator[dict[str, Any], None], states)):
            async for state in states:
                await _show(w, run, worker, state, "running")
        await _show(w, run, worker, state, "succeeded")
        await _end(w, run, worker, "succeeded", "Done.")
    except Paused as paused:
        await _show(w, run, worker, state, "paused")
        if await runs.pause(w.engine, run, worker, paused.reason, paused.needs):
            await w.tell(run.owner, run.id)
    except (ModelFailed, ModelUnreachable) as failed:
        await _try_again_later(w, run, worker, state, f"The model's provider failed: {failed}")
    except Exception:  # ours (a store or database away, a bug): logged, tried again, then ended
        reference = secrets.token_hex(4)
        log.exception("Run %s failed here (reference %s)", run.id, reference)
        await _try_again_later(
            w, run, worker, state, f"An error here stopped it (ref {reference})."
        )
    finally:
        await files.clear(folder)


async def _try_again_later(
    w: Workplace, run: runs.Run, worker: str, state: dict[str, Any], reason: str
) -> None:
    """Back to pending for a while (5 s, then 20 s); the third failure in a row ends the run."""
    if run.failures + 1 >= MOST_FAILURES:
        await _show(w, run, worker, state, "failed")
        await _end(w, run, worker, "failed",
                   f"It failed {MOST_FAILURES} times in a row; the last time: {reason}")  # fmt: skip
        return
    after_s = 5.0 * 4**run.failures
    log.warning("Run %s: %s Trying again in %.0f s", run.id, reason, after_s)
    await _show(w, run, worker, {**state, "note": f"{reason} Trying again in {after_s:.0f} s."},
                "running")  # fmt: skip
    if await runs.retry_later(w.engine, run, worker, after_s):
        await w.tell(run.owner, run.id)


async def _end(w: Workplace, run: runs.Run, worker: str, status: runs.Status, outcome: str) -> None:
    if await runs.finish(w.engine, run, worker, status, outcome):
        await w.tell(run.owner, run.id)


async def _show(
    w: Workplace, run: runs.Run, worker: str, state: dict[str, Any], status: str
) -> None:
    if await runs.show(w.engine, run, worker, progress_of(state, status)):
        await w.tell(run.owner, run.id)


def progress_of(state: dict[str, Any], status: str) -> dict[str, Any]:
    """What the person sees of a run's state: its plan with each step's state, the tool calls
    (their answers cut), the answer."""
    plan = state.get("plan") or []
    current = state.get("current", 0)
    items = [
        {"title": item["title"], "summary": item["summary"],
         "status": "running" if item["status"] == "planned" and i == current
         and status == "running" else item["status"]}
        for i, item in enumerate(plan)
    ]  # fmt: skip
    calls = [
        {**call, "result": call["result"][:RESULT_CHARS]
         + ("…" if len(call["result"]) > RESULT_CHARS else "")}
        for call in state.get("calls") or []
    ]  # fmt: skip
    return {
        "plan": items, "calls": calls, "answer": state.get("answer", ""),
        "note": state.get("note", ""), "actions": state.get("n", 0),
    }  # fmt: skip

"""The worker of one app process: claims runs, keeps their leases, carries them out.

Every process runs one. On SQLite (one process) it is the only one, and at its start the runs the
process was working on when it was killed are pending again at once (`runs.recover`). On
PostgreSQL every replica's worker claims from the same table (`FOR UPDATE SKIP LOCKED`); a run
whose worker died is claimed by another once its lease has expired, and its graph resumes from
its last saved step.

- It claims while it has room (`most_runs` at a time), then waits to be poked (a run was started
  or woken here) or `poll_s`, whichever comes first: runs started on other replicas are found by
  polling.
- Each run's lease is renewed every third of `lease_s`; a renewal refused (the run was cancelled,
  or another worker took it over after this one stalled) stops the run here at once.
- `stop_run` stops a run at once (its owner cancelled it; told through the live channel).
- Every `sweep_s` it wakes the runs paused for credits whose owners now have enough (a top-up
  told while no replica listened is not lost).
- Supervised: a failure of the claiming loop is logged and it starts again after a pause; `health`
  says whether it is serving. At shutdown the runs it holds are released, pending again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.providers import Health
from storage import runs

log = logging.getLogger("tasks.worker")

CarryOut = Callable[[runs.Run, str], Awaitable[None]]  # (run, this worker's name)
Sweep = Callable[[], Awaitable[None]]
MAX_PAUSE_S = 30.0


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        carry_out: CarryOut,
        lease_s: float,
        most_runs: int,
        poll_s: float = 2.0,
        sweep: Sweep | None = None,
        sweep_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.carry_out = carry_out
        self.lease_s = lease_s
        self.most_runs = most_runs
        self.poll_s = poll_s
        self.sweep = sweep
        self.sweep_s = sweep_s
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.active: dict[str, tuple[runs.Run, asyncio.Task[None]]] = {}
        self.serving = False
        self._poked = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._swept = time.monotonic()

    def start(self) -> None:
        self._loop = asyncio.create_task(self._serve_forever(), name="task-worker")

    def poke(self) -> None:
        """A run may be waiting to be claimed: look now."""
        self._poked.set()

    def stop_run(self, run_id: str) -> bool:
        """Stop run `run_id` at once if this worker carries it out (it was cancelled)."""
        found = self.active.get(run_id)
        if found is None:
            return False
        found[1].cancel()
        return True

    def health(self) -> Health:
        if self.serving:
            return Health(True, f"{len(self.active)} of {self.most_runs} running here")
        return Health(False, "not claiming runs: starting again")

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        held = list(self.active.values())
        for _, task in held:
            task.cancel()
        await asyncio.gather(*(task for _, task in held), return_exceptions=True)
        for run, _ in held:  # pending again at once, for the next start or another replica
            with contextlib.suppress(Exception):
                await runs.release(self.engine, run, self.name)

    async def _serve_forever(self) -> None:
        pause = 1.0
        while True:
            try:
                await self._serve()
            except Exception:
                log.exception("The task worker failed; claiming again in %.0f s", pause)
            self.serving = False
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_S)

    async def _serve(self) -> None:
        while True:
            self._poked.clear()
            while len(self.active) < self.most_runs:
                run = await runs.claim(self.engine, self.name, self.lease_s)
                if run is None:
                    break
                self._begin(run)
            self.serving = True
            if self.sweep is not None and time.monotonic() - self._swept >= self.sweep_s:
                self._swept = time.monotonic()
                await self.sweep()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self.poll_s)

    def _begin(self, run: runs.Run) -> None:
        task = asyncio.create_task(self._work(run), name=f"task-run:{run.id}")
        self.active[run.id] = (run, task)

    async def _work(self, run: runs.Run) -> None:
        keeping = asyncio.create_task(self._keep_lease(run, asyncio.current_task()))
        try:
            await self.carry_out(run, self.name)
        except asyncio.CancelledError:
            log.info("Run %s stopped here (cancelled, taken over or shutting down)", run.id)
        except Exception:  # carry_out says how a run ended; anything else is a bug, logged
            log.exception("Run %s failed in its worker", run.id)
        finally:
            keeping.cancel()
            self.active.pop(run.id, None)
            self.poke()  # room for another

    async def _keep_lease(self, run: runs.Run, work: asyncio.Task[None] | None) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                kept = await runs.heartbeat(self.engine, run, self.name, self.lease_s)
            except Exception:  # the database is away: try again; the lease may lapse meanwhile
                log.exception("Could not renew the lease of run %s", run.id)
                continue
            if not kept and work is not None:
                log.warning("Run %s is no longer this worker's (cancelled or taken over)", run.id)
                work.cancel()
                return

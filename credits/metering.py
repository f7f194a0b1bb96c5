"""One path for every piece of metered work: quote, hold, run, price what was delivered, settle.

Knows nothing of chat, models or the app: a piece of work is a `Work` (its kind, the most it can
cost, what the person's usage shows of it), priced by whoever knows the work. The path, in every way
a piece of work can end:

- Before it starts, `hold` holds the most it can cost under an id minted here (`work_id`), never
  taken from a client; `InsufficientCredits` means nothing was held and the work must not start. The
  work runs only on a hold its own reserve created (`HoldNotCreated` otherwise): a replayed or
  edited message is new work with a new hold.
- It runs inside `running(meter)`, and says what was delivered with `meter.use(units)`.
- Finished, failed part-way or stopped by the person (the block cancelled): once the block is left,
  the hold is settled at what was used, never above what was held, and the rest released; nothing
  used (failed before delivering anything): released whole.
- The process dies first: the hold expires by itself and the credits come back.

The settle runs in a task of its own, after the block: the work is already delivered, so the person
does not wait for a second durable commit (only the hold's is on their path), and Stop does not
cancel it. Work that knows it is over before its block ends (the last image is in; the page is
still being told) starts that task early with `meter.settle_soon()`: once started, nothing more is
`use`d. `after` runs once it is done (the app tells the person there). `finish_settling` waits
for the ones in flight (at shutdown). Work priced at nothing (a free local model) holds zero units and
settles at zero, so it still shows in the person's usage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from credits.errors import CreditsError, HoldNotCreated
from credits.ledger import TRANSFER_ID, Transfer
from credits.store import Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Work:
    """What a piece of work is, as the ledger records it: its kind (chat, image, vision, a task
    step...), the most it can cost in units, and what the person's usage shows of it (its model,
    its size...)."""

    kind: str
    most: int
    metadata: Mapping[str, Any] = field(default_factory=dict)


def work_id(kind: str = "turn") -> str:
    """A new transfer id for one piece of work, minted on the server: `<kind>:<128 random bits>`."""
    return f"{kind}:{secrets.token_hex(16)}"


def welcome_id(user: str) -> str:
    """The welcome bonus's transfer id: one per person, whatever path they signed in by."""
    return transfer_id("welcome", user)


def transfer_id(prefix: str, ref: str) -> str:
    """`prefix:ref`, or `prefix:h-<digest>` when `ref` has characters a transfer id may not."""
    plain = f"{prefix}:{ref}"
    if TRANSFER_ID.fullmatch(plain):
        return plain
    return f"{prefix}:h-{hashlib.sha256(ref.encode()).hexdigest()[:40]}"


class Meter:
    """The credits side of one piece of work, from its hold to its settlement."""

    def __init__(
        self, ledger: Ledger, user: str, work: Work, timeout_s: int, transfer_id: str | None = None
    ) -> None:
        self.ledger = ledger
        self.user = user
        self.work = work
        self.transfer_id = transfer_id or work_id()
        self.timeout_s = timeout_s
        self.holding = False
        self.held = 0
        self.used: int | None = None
        self.details: dict[str, Any] = {}
        self.settled: Transfer | None = None
        self._settling: asyncio.Task[None] | None = None

    async def hold(self) -> None:
        """Hold the most the work can cost (zero for free work) under this work's own id:
        `InsufficientCredits` when the person does not have it."""
        metadata = {**self.work.metadata, "kind": self.work.kind}
        held = await self.ledger.reserve(
            self.user, self.work.most, self.transfer_id, self.timeout_s, metadata=metadata
        )
        if not held.created:  # the id is this work's own: another hold under it is a replay
            raise HoldNotCreated(
                f"Hold {self.transfer_id!r} exists already; the work must not run."
            )
        self.holding = True
        self.held = self.work.most

    def use(self, units: int, details: Mapping[str, Any] | None = None) -> None:
        """What the delivered work is priced at (and how it was counted); charged when the work
        ends, at most what was held. Work that delivered nothing does not call this: it is
        released."""
        if self._settling is not None:
            raise RuntimeError(f"{self.transfer_id} is being settled: nothing more can be used")
        self.used = units
        self.details = dict(details or {})

    @property
    def charged(self) -> int:
        """What the person pays for this work, in units."""
        return min(self.used or 0, self.held)

    def settle_soon(self) -> asyncio.Task[None]:
        """The work is over: settle at what was used (or release) now, in a task of its own that
        Stop does not cancel, while the caller finishes telling the person. Started once; the
        block's end waits for the same settle."""
        if self._settling is None:
            self._settling = asyncio.create_task(self._settle(), name=f"settle {self.transfer_id}")
        return self._settling

    async def close(self) -> None:
        """Settle at what was used, or release (once, however often it is asked); a failure
        here leaves the hold to expire."""
        await asyncio.shield(self.settle_soon())

    async def _settle(self) -> None:
        if not self.holding or self.settled is not None:
            return
        extra = dict(self.details)
        if (self.used or 0) > self.held:
            extra["uncharged_units"] = (self.used or 0) - self.held
            log.warning(
                "%s used %d units, more than the %d held", self.transfer_id, self.used, self.held
            )
        try:
            if self.used is None:
                self.settled = await self.ledger.release(self.transfer_id, extra)
            else:
                self.settled = await self.ledger.settle(self.transfer_id, self.charged, extra)
        except CreditsError as error:
            # E.g. the work outlived its hold: it expired and nothing is charged.
            log.warning("Could not close %s: %s", self.transfer_id, error)


After = Callable[["Meter"], Awaitable[None]]
_settling: set[asyncio.Task[None]] = set()  # held here so that they are not collected mid-way


async def hold(ledger: Ledger, user: str, work: Work, timeout_s: int) -> Meter:
    """The step before any work: `work.most` of `user`'s credits held under a new server-minted
    id. `InsufficientCredits` (nothing held) when they cannot cover it: the work must not start."""
    meter = Meter(ledger, user, work, timeout_s)
    await meter.hold()
    return meter


async def hold_step(
    ledger: Ledger, user: str, work: Work, step: str, attempt: int, since: int, timeout_s: int
) -> Meter | Transfer:
    """The hold for one step of long work (a task's model call or tool call), whose id is derived
    from the step (`step`, e.g. `task:<run>:<n>`) and the attempt that runs it: `<step>.<attempt>`.

    A step is run again when the process running it died before its result was saved; the
    attempts that may have run it before are `since` to `attempt - 1`. One of them charged: its
    charge (the post) is returned, the step is paid for and runs again free. One left a hold
    (dead, so it will never settle): released first, its credits back. Then the step is held
    under this attempt's own id."""
    for earlier in range(max(since, 1), attempt):
        hold_id = f"{step}.{earlier}"
        if await ledger.transfer(hold_id) is None:
            continue
        if (post := await ledger.transfer(f"{hold_id}/post")) is not None:
            return post
        try:
            await ledger.release(hold_id, {"reason": "a later attempt runs the step"})
        except CreditsError:  # resolved meanwhile: settled by its attempt after all, or expired
            if (post := await ledger.transfer(f"{hold_id}/post")) is not None:
                return post
    meter = Meter(ledger, user, work, timeout_s, transfer_id=f"{step}.{attempt}")
    await meter.hold()
    return meter


@asynccontextmanager
async def running(meter: Meter, after: After | None = None) -> AsyncIterator[Meter]:
    """The work runs in this block; once it is left, however (done, failed, cancelled), the hold
    is settled at what the work reported with `use`, or released, and then `after` runs."""
    try:
        yield meter
    finally:
        # Its own task: not cancelled with the block when the person presses Stop, so what was
        # delivered is still charged; and the block's caller does not wait for the commit.
        task = asyncio.create_task(_close(meter, after))
        _settling.add(task)
        task.add_done_callback(_settling.discard)


async def _close(meter: Meter, after: After | None) -> None:
    await meter.close()
    if after is not None:
        try:
            await after(meter)
        except Exception:  # the person may have left: their badge is theirs to miss
            log.exception("After settling %s", meter.transfer_id)


async def finish_settling() -> None:
    """Wait for the settles still running (before the ledger closes)."""
    while _settling:
        await asyncio.gather(*list(_settling), return_exceptions=True)

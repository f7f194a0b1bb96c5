"""A metered turn: hold credits before the work, charge what was used after, release on failure.

Knows nothing of chat or models. The caller holds the most the work could cost, reports what it
used, and leaves the `turn` block however it leaves it (normally, by an error, or cancelled when the
user presses stop); on the way out the hold is settled at what was used, never above what was held,
or released when nothing was used. If the process dies first, the hold expires by itself and the
credits come back.

The settle runs in a task of its own, after the block: the work is already delivered, so the person
does not wait for a second durable commit (only the hold's is on their path). `after` runs once it
is done (the app updates the balance badge there). `finish_settling` waits for the ones in flight
(at shutdown).

Every hold's id is minted here for its piece of work (`work_id`), never taken from a client: a
replayed or edited message is a new piece of work with a new hold, and the work runs only on a hold
its own reserve created. Work priced at nothing (a free local model) holds zero units and settles at
zero, so it still shows in the person's usage.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from credits.errors import CreditsError, HoldNotCreated
from credits.ledger import TRANSFER_ID, UNITS_PER_CREDIT, Transfer
from credits.store import Ledger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pricing:
    """Turns provider prices (US dollars per million tokens) into ledger units."""

    credit_usd: Decimal
    markup: Decimal = Decimal(1)

    def units(
        self,
        input_usd_per_mtok: Decimal,
        output_usd_per_mtok: Decimal,
        tokens_in: int,
        tokens_out: int,
    ) -> int:
        """What `tokens_in` and `tokens_out` cost, in units, rounded up to a whole unit."""
        usd = (input_usd_per_mtok * tokens_in + output_usd_per_mtok * tokens_out) / 1_000_000
        units = usd * self.markup / self.credit_usd * UNITS_PER_CREDIT
        return int(units.to_integral_value(rounding=ROUND_CEILING))

    def credits_per_1k(self, usd_per_mtok: Decimal) -> Decimal:
        """Credits per 1,000 tokens at a provider price in dollars per million tokens."""
        return usd_per_mtok / 1000 * self.markup / self.credit_usd


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
    """The credits side of one piece of work. Use it through `turn`."""

    def __init__(
        self,
        ledger: Ledger,
        user: str,
        timeout_s: int,
        metadata: Mapping[str, Any],
        kind: str = "turn",
    ) -> None:
        self.ledger = ledger
        self.user = user
        self.transfer_id = work_id(kind)
        self.timeout_s = timeout_s
        self.metadata = dict(metadata)
        self.holding = False
        self.held = 0
        self.used: int | None = None
        self.details: dict[str, Any] = {}
        self.settled: Transfer | None = None

    async def hold(self, units: int) -> None:
        """Hold `units` (zero for free work) of the user's credits under this work's own id:
        `InsufficientCredits` when they do not have them."""
        held = await self.ledger.reserve(
            self.user, units, self.transfer_id, self.timeout_s, metadata=self.metadata
        )
        if not held.created:  # the id is this work's own: another hold under it is a replay
            raise HoldNotCreated(
                f"Hold {self.transfer_id!r} exists already; the work must not run."
            )
        self.holding = True
        self.held = units

    def use(self, units: int, details: Mapping[str, Any] | None = None) -> None:
        """What the delivered work used (and how it was counted); charged when the turn ends, at
        most what was held. Work that delivered nothing does not call this: it is released."""
        self.used = units
        self.details = dict(details or {})

    @property
    def charged(self) -> int:
        """What the user pays for this turn, in units."""
        return min(self.used or 0, self.held)

    async def close(self) -> None:
        """Settle at what was used, or release; a failure here leaves the hold to expire."""
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
            # E.g. the turn outlived its hold: it expired and nothing is charged.
            log.warning("Could not close %s: %s", self.transfer_id, error)


After = Callable[["Meter"], Awaitable[None]]
_settling: set[asyncio.Task[None]] = set()  # held here so that they are not collected mid-way


@asynccontextmanager
async def turn(
    ledger: Ledger,
    user: str,
    timeout_s: int,
    metadata: Mapping[str, Any],
    after: After | None = None,
    kind: str = "turn",
) -> AsyncIterator[Meter]:
    """A metered piece of work under a new server-minted id; the hold is settled or released once
    the block is left, then `after` runs."""
    meter = Meter(ledger, user, timeout_s, metadata, kind)
    try:
        yield meter
    finally:
        # Its own task: not cancelled with the block when the user presses stop, so what was
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

"""Hypothesis drives the real ledger (SQLite) and a plain in-memory model side by side.

Random grants, reserves, settles, releases, expiries with a controllable clock, and retries with the
same or a changed payload. After every step the balances match the model and `verify` holds:
conservation, no user below zero, balances equal to the fold over transfers, each hold resolved at
most once and settled at most for what it held.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from credits.errors import (
    CreditsError,
    HoldExpired,
    HoldResolved,
    IdempotencyConflict,
    InsufficientCredits,
    SettleExceedsHold,
)
from credits.ledger import Balance
from credits.store import Ledger
from credits.verify import verify
from tests.credits.conftest import Clock

USERS = ("ann", "bob")
HOLD_IDS = tuple(f"turn:{i}" for i in range(8))
GRANT_IDS = tuple(f"grant:{i}" for i in range(4))


@dataclass
class Hold:
    user: str
    amount: int
    expires: int
    state: str = "open"  # open, post, void, expire
    settled: int = 0
    timeout: int = 0


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="ledger-model-"))
        self.clock = Clock()
        self.ledger = Ledger(
            f"sqlite+aiosqlite:///{self.dir / 'l.db'}", self.dir, Ed25519PrivateKey.generate(),
            checkpoint_every=4, clock=self.clock,
        )  # fmt: skip
        self.run(self.ledger.start(background=False))
        self.posted = dict.fromkeys(USERS, 0)
        self.holds: dict[str, Hold] = {}
        self.grants: dict[str, tuple[str, int]] = {}

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def attempt(self, coro, expected: type[CreditsError] | None) -> None:  # type: ignore[no-untyped-def]
        try:
            self.run(coro)
        except CreditsError as exc:
            assert expected is not None and isinstance(exc, expected), (expected, exc)
            return
        assert expected is None, f"expected {expected.__name__}"

    def available(self, user: str) -> int:
        held = sum(h.amount for h in self.holds.values() if h.user == user and h.state == "open")
        return self.posted[user] - held

    def expire(self, user: str | None = None) -> None:
        for h in self.holds.values():
            if h.state == "open" and h.expires <= self.clock.now and user in (None, h.user):
                h.state = "expire"

    @rule(user=st.sampled_from(USERS), amount=st.integers(1, 5000), tid=st.sampled_from(GRANT_IDS))
    def grant(self, user: str, amount: int, tid: str) -> None:
        first = self.grants.get(tid)
        expected = None if first in (None, (user, amount)) else IdempotencyConflict
        self.attempt(self.ledger.grant(user, amount, tid), expected)
        if first is None:
            self.grants[tid] = (user, amount)
            self.posted[user] += amount

    @rule(
        user=st.sampled_from(USERS), amount=st.integers(1, 3000),
        tid=st.sampled_from(HOLD_IDS), timeout=st.sampled_from([5, 60]),
    )  # fmt: skip
    def reserve(self, user: str, amount: int, tid: str, timeout: int) -> None:
        self.expire(user)  # the store releases the user's overdue holds first, whatever follows
        first = self.holds.get(tid)
        if first is not None:
            same = (first.user, first.amount, first.timeout) == (user, amount, timeout)
            self.attempt(
                self.ledger.reserve(user, amount, tid, timeout),
                None if same else IdempotencyConflict,
            )
            return
        expected = None if self.available(user) >= amount else InsufficientCredits
        self.attempt(self.ledger.reserve(user, amount, tid, timeout), expected)
        if expected is None:
            expires = self.clock.now + timeout * 1_000_000
            self.holds[tid] = Hold(user, amount, expires, timeout=timeout)

    @rule(tid=st.sampled_from(HOLD_IDS), amount=st.integers(0, 3500))
    def settle(self, tid: str, amount: int) -> None:
        hold = self.holds.get(tid)
        expected: type[CreditsError] | None
        if hold is None:
            expected = CreditsError
        elif hold.state == "post":
            expected = None if amount == hold.settled else IdempotencyConflict
        elif hold.state == "expire" or hold.expires <= self.clock.now:
            expected = HoldExpired
        elif hold.state == "void":
            expected = HoldResolved
        elif amount > hold.amount:
            expected = SettleExceedsHold
        else:
            expected = None
        self.attempt(self.ledger.settle(tid, amount), expected)
        if expected is None and hold is not None and hold.state == "open":
            hold.state, hold.settled = "post", amount
            self.posted[hold.user] -= amount

    @rule(tid=st.sampled_from(HOLD_IDS))
    def release(self, tid: str) -> None:
        hold = self.holds.get(tid)
        if hold is None:
            expected: type[CreditsError] | None = CreditsError
        elif hold.state == "void":
            expected = None  # a retried release returns the first result
        elif hold.state == "expire":
            expected = HoldExpired
        elif hold.state == "post":
            expected = HoldResolved
        else:
            expected = None
        self.attempt(self.ledger.release(tid), expected)
        if expected is None and hold is not None:
            hold.state = "void"

    @rule(seconds=st.sampled_from([1, 4, 30, 61]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def expire_holds(self) -> None:
        due = sum(
            1 for h in self.holds.values() if h.state == "open" and h.expires <= self.clock.now
        )
        assert self.run(self.ledger.expire_holds()) == due
        self.expire()

    @invariant()
    def balances_match_the_model(self) -> None:
        for user in USERS:
            held = sum(
                h.amount for h in self.holds.values() if h.user == user and h.state == "open"
            )
            expected = Balance(self.posted[user] - held, held, self.posted[user])
            assert self.run(self.ledger.balance(user)) == expected

    @invariant()
    def the_ledger_verifies(self) -> None:
        report = self.run(verify(self.ledger))
        assert report.ok, report.problems

    def teardown(self) -> None:
        self.run(self.ledger.close())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)


LedgerMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
test_ledger_matches_the_model = LedgerMachine.TestCase

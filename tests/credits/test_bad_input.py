"""Bad input gets a typed error and writes nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from credits.errors import (
    CreditsError,
    HoldExpired,
    HoldResolved,
    InsufficientCredits,
    InvalidRequest,
    SettleExceedsHold,
    UnknownAccount,
    UnknownHold,
)
from credits.ledger import MAX_AMOUNT
from credits.ops import Db
from credits.store import Ledger
from tests.credits.conftest import Clock


def count(db: Db) -> int:
    row = db.one("SELECT count(*) FROM ledger_transfers")
    assert row is not None
    return int(row[0])


Call = Callable[[Ledger], Awaitable[object]]
BAD: list[tuple[str, Call, type[CreditsError]]] = [
    ("zero grant", lambda b: b.grant("ann", 0, "g:0"), InvalidRequest),
    ("negative grant", lambda b: b.grant("ann", -5, "g:1"), InvalidRequest),
    ("fractional grant", lambda b: b.grant("ann", 1.5, "g:2"), InvalidRequest),  # type: ignore[arg-type]
    ("string amount", lambda b: b.grant("ann", "10", "g:3"), InvalidRequest),  # type: ignore[arg-type]
    ("boolean amount", lambda b: b.grant("ann", True, "g:4"), InvalidRequest),
    ("huge grant", lambda b: b.grant("ann", MAX_AMOUNT + 1, "g:5"), InvalidRequest),
    ("2**63 reserve", lambda b: b.reserve("ann", 2**63, "r:0", 60), InvalidRequest),
    ("empty id", lambda b: b.grant("ann", 5, ""), InvalidRequest),
    ("id with spaces", lambda b: b.grant("ann", 5, "a b"), InvalidRequest),
    ("id too long", lambda b: b.grant("ann", 5, "x" * 201), InvalidRequest),
    ("bad code", lambda b: b.grant("ann", 5, "g:6", code="DROP TABLE"), InvalidRequest),
    ("bad user", lambda b: b.grant(" ann", 5, "g:7"), InvalidRequest),
    (
        "metadata not JSON",
        lambda b: b.grant("ann", 5, "g:8", metadata={"x": object()}),
        InvalidRequest,
    ),
    (
        "metadata too big",
        lambda b: b.grant("ann", 5, "g:9", metadata={"x": "y" * 5000}),
        InvalidRequest,
    ),
    ("zero timeout", lambda b: b.reserve("ann", 5, "r:1", 0), InvalidRequest),
    ("week timeout", lambda b: b.reserve("ann", 5, "r:2", 7 * 86400), InvalidRequest),
    ("unknown user spends", lambda b: b.reserve("nobody", 5, "r:3", 60), InsufficientCredits),
    ("unknown user adjusted", lambda b: b.adjust("nobody", 5, "why", "adm", "a:0"), UnknownAccount),
    ("adjust by zero", lambda b: b.adjust("ann", 0, "why", "adm", "a:1"), InvalidRequest),
    ("adjust without reason", lambda b: b.adjust("ann", 5, " ", "adm", "a:2"), InvalidRequest),
    ("overdraw by one unit", lambda b: b.reserve("ann", 11_401, "r:4", 60), InsufficientCredits),
    ("settle unknown hold", lambda b: b.settle("turn:none", 1), UnknownHold),
    ("settle above hold", lambda b: b.settle("turn:open", 501), SettleExceedsHold),
    ("settle negative", lambda b: b.settle("turn:open", -1), InvalidRequest),
    ("settle released hold", lambda b: b.settle("turn:released", 1), HoldResolved),
    ("release settled hold", lambda b: b.release("turn:settled"), HoldResolved),
    ("settle expired hold", lambda b: b.settle("turn:expired", 1), HoldExpired),
    ("settle a grant", lambda b: b.settle("welcome:ann", 1), UnknownHold),
]


@pytest.mark.parametrize(("name", "call", "error"), BAD, ids=[b[0] for b in BAD])
async def test_bad_input_is_refused_and_changes_nothing(
    ledger: Ledger, clock: Clock, name: str, call: Call, error: type[CreditsError]
) -> None:
    await ledger.grant("ann", 12_000, "welcome:ann", code="welcome")
    await ledger.reserve("ann", 500, "turn:open", 60)
    await ledger.reserve("ann", 500, "turn:released", 60)
    await ledger.release("turn:released")
    await ledger.reserve("ann", 500, "turn:settled", 60)
    await ledger.settle("turn:settled", 100)
    await ledger.reserve("ann", 500, "turn:expired", 5)
    clock.advance(10)
    await ledger.expire_holds()
    before = (await ledger.balance("ann"), await ledger._read(count))
    with pytest.raises(error):
        await call(ledger)
    assert (await ledger.balance("ann"), await ledger._read(count)) == before

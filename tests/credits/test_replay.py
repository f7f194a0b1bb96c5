"""A long log is replayed in two halves at once and joined: the join must be exact.

Exact both ways: every rule broken across the cut is caught (a missed one would pass a bad
ledger), and nothing that holds is flagged (a false alarm makes `verify` replay the log again in
one piece, twice the time). So the pure parts are checked against the replay in one piece at every
cut, and `verify` is run cut on a real ledger, tampered with and not.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credits import log
from credits.ledger import Books, leaf_bytes
from credits.replay import ROOT, replay
from credits.store import Ledger
from credits.verify import verify
from tests.credits.test_tampering import ATTACKS, attack, populate

ACCOUNTS = ["user:ann", "user:bob", "system:promotions"]

# A transfer as `Books.add` takes it: (id, kind, amount, debit, credit, hold id).
Transfer = tuple[str, str, int, str, str, str | None]


@st.composite
def transfers(draw: st.DrawFn) -> list[Transfer]:
    """Transfers that mostly keep the rules and sometimes break one (overdraw, resolve twice,
    post above the hold, release the wrong amount, resolve an unknown hold, swap accounts)."""
    out: list[Transfer] = []
    holds: list[tuple[str, str, str, int]] = []
    for i in range(draw(st.integers(1, 30))):
        tid = f"t{i}"
        step = draw(st.sampled_from(["grant", "grant", "spend", "hold", "hold", "resolve"]))
        amount = draw(st.integers(1, 50))
        user = draw(st.sampled_from(ACCOUNTS[:2]))
        if step == "grant":
            out.append((tid, "posted", amount, "system:promotions", user, None))
        elif step == "spend":
            out.append((tid, "posted", amount, user, "system:promotions", None))
        elif step == "hold":
            out.append((tid, "pending", amount, user, "system:promotions", None))
            holds.append((tid, user, "system:promotions", amount))
        else:
            if holds and draw(st.integers(0, 9)):
                hold, debit, credit, held = draw(st.sampled_from(holds))
            else:
                hold, debit, credit, held = "nowhere", user, "system:promotions", amount
            if not draw(st.integers(0, 9)):
                debit, credit = credit, debit
            if draw(st.booleans()):
                out.append((tid, "post", draw(st.integers(0, held + 2)), debit, credit, hold))
            else:
                released = held + draw(st.sampled_from([0, 0, 0, 1]))
                out.append((tid, "void", released, debit, credit, hold))
    return out


def fold(items: list[Transfer], books: Books) -> bool:
    """Fold `items` into `books`; False when one breaks a rule."""
    try:
        for t in items:
            books.add(*t)
    except ValueError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(transfers(), st.data())
def test_books_joined_at_any_cut_agree_with_one_fold(items: list[Transfer], data: Any) -> None:
    whole = Books()
    holds = fold(items, whole)
    cut = data.draw(st.integers(0, len(items)))
    first, later = Books(), Books(open_start=True)
    joined = fold(items[:cut], first) and fold(items[cut:], later)
    if joined:
        try:
            first.join(later)
        except ValueError:
            joined = False
    assert joined == holds, (cut, items)
    if holds:
        assert first.counters == whole.counters
        assert first.holds == whole.holds
        assert first.conserved()


def entry_rows(n: int) -> tuple[list[tuple[Any, ...]], dict[int, str]]:
    """`n` log rows (as `entries_sql` reads them) of grants, with their right leaf hashes."""
    names = {1: "system:promotions", 2: "user:ann"}
    rows = []
    for seq in range(1, n + 1):
        fields = (seq, f"g{seq}", "posted", "grant", 5, names[1], names[2], None, None, seq, "{}")
        leaf = log.leaf_hash(leaf_bytes(*fields))
        rows.append((seq, leaf, f"g{seq}", "posted", "grant", 5, 1, 2, None, None, seq, "{}", seq))
    return rows, names


def no_holds(pk: int) -> str | None:
    raise AssertionError(f"these entries resolve no hold, yet hold {pk} was asked for")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 13, 16, 33])
def test_trees_of_two_stretches_join_into_the_whole_tree(n: int) -> None:
    rows, names = entry_rows(n)
    leaves = [bytes(r[1]) for r in rows]
    sizes = set(range(1, n + 1))
    for cut in range(n + 1):
        head = replay(rows[:cut], names, 1, sizes, no_holds)
        tail = replay(rows[cut:], names, cut + 1, sizes, no_holds)
        assert head.problem is None and tail.problem is None and tail.size == n
        joined = log.join_frontier(head.nodes, cut, tail.subtrees)
        assert log.frontier_root(joined) == log.root(leaves), cut
        for size, subtrees in tail.at.items():
            at = log.join_frontier(head.nodes, cut, subtrees)
            assert log.frontier_root(at) == log.root(leaves[:size]), (cut, size)


def test_a_stretch_names_a_gap_at_its_start() -> None:
    rows, names = entry_rows(10)
    walk = replay(rows[6:], names, 6, set(), no_holds)
    assert walk.problem == "log entry 6 is missing (next is 7)"


async def story(ledger: Ledger) -> None:
    """Holds placed before the middle of the log and resolved after it, and a user who spends,
    after the middle, credits granted before it."""
    await ledger.grant("ann", 10_000, "welcome:ann", code="welcome")
    for i in range(6):
        await ledger.reserve("ann", 1500, f"turn:{i}", timeout_s=60)
    for i in range(6):
        await ledger.settle(f"turn:{i}", 1000 + i)
    await ledger.reserve("ann", 3900, "turn:last", timeout_s=60)
    await ledger.release("turn:last")


async def test_verify_in_two_halves_agrees_with_one_piece(ledger: Ledger) -> None:
    await story(ledger)
    whole = await verify(ledger)
    halves = await verify(ledger, split_from=2)
    assert whole.ok and halves.ok, (whole.problems, halves.problems)
    assert whole.split is None
    assert halves.split is not None, "the halves did not hold together: replayed in one piece"
    assert (halves.entries, halves.root) == (whole.entries, whole.root) == (15, halves.root)


# (The attack that recomputes a hash needs it made for its ledger: test_tampering covers it.)
@pytest.mark.parametrize("name", [a for a in ATTACKS if "its log hash" not in a])
async def test_verify_in_two_halves_names_the_tampered_place(ledger: Ledger, name: str) -> None:
    await populate(ledger)
    statements, expected = ATTACKS[name]
    attack(ledger, *statements)
    report = await verify(ledger, split_from=2)
    assert not report.ok
    assert re.search(expected, report.problems[0]), report.problems


async def test_a_failed_helper_leaves_the_replay_to_one_piece(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    await story(ledger)
    monkeypatch.setattr(ledger, "address", lambda: ("sqlite", "/nonexistent/ledger.db"))
    report = await verify(ledger, split_from=2)
    assert report.ok and report.split is None and report.entries == 15


def test_the_helper_starts_without_the_heavy_imports() -> None:
    """What makes the helper worth starting: it loads the replay and the standard library only."""
    probe = (
        "import sys, credits.replay; "
        "print(sorted(m for m in ('sqlalchemy', 'cryptography', 'asyncpg') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"

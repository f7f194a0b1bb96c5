"""Replaying the log: each entry against its hash and the ledger's rules, the Merkle tree regrown.

`verify` replays the whole log. A long one is cut in two and the halves are replayed at once: the
later by a helper process (`python -m credits.replay`, given the stretch and the database's address
on its stdin, answering a pickled `Walk` on its stdout), the earlier by the caller, and the two are
joined: the books with `Books.join`, the tree with `log.join_frontier`. A stretch's tree is kept as
its complete subtrees, (level, hash), aligned to their place in the whole log, so they fit onto
whatever comes before them.

The helper imports only what a replay needs (no SQLAlchemy, no signing keys): it is ready in a few
tens of milliseconds, against ~0.25 s for each 50,000 entries it replays.
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from credits.ledger import Books, json_str

ROOT = Path(__file__).resolve().parent.parent


def entries_sql(first: int, last: int | None = None) -> str:
    """The log's entries from `first` (to `last`), one row each in the shape `replay` reads:
    (seq, leaf hash, id, kind, code, amount, debit account id, credit account id, hold's pk,
    expires, ts, metadata, pk). Account names come from a map read once, and a hold's id from the
    hold itself, met earlier in the replay: one join per row, not two."""
    bound = f"l.seq >= {int(first)}" + ("" if last is None else f" AND l.seq <= {int(last)}")
    return (
        "SELECT l.seq, l.leaf_hash, t.transfer_id, t.kind, t.code, t.amount, t.debit_id, "
        "t.credit_id, t.hold_pk, t.expires_us, t.ts_us, t.metadata, l.transfer_pk "
        f"FROM ledger_log l LEFT JOIN ledger_transfers t ON t.pk = l.transfer_pk WHERE {bound} "
        "ORDER BY l.seq"
    )


HOLD_ID = "SELECT transfer_id FROM ledger_transfers WHERE pk = :pk"


def hold_ids(
    one: Callable[[str, dict[str, int]], Sequence[Any] | None],
) -> Callable[[int], str | None]:
    """What `replay` asks a hold's id of: `HOLD_ID` run by `one` (a connection's query for one
    row)."""

    def hold_id(pk: int) -> str | None:
        row = one(HOLD_ID, {"pk": pk})
        return None if row is None else str(row[0])

    return hold_id


@dataclass
class Walk:
    """What one replay of a stretch of the log rebuilt."""

    books: Books
    size: int  # the last entry replayed (first - 1 when none was)
    levels: list[int] = field(default_factory=list)  # the stretch's complete subtrees, left to
    nodes: list[bytes] = field(default_factory=list)  # right: their levels and hashes
    at: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)  # the same, at sizes
    problem: str | None = None  # the first entry that does not hold, in words

    @property
    def subtrees(self) -> list[tuple[int, bytes]]:
        return list(zip(self.levels, self.nodes, strict=True))


def replay(
    entries: Iterable[Sequence[Any]],
    names: dict[int, str],
    first: int,
    wanted: set[int],
    hold_id: Callable[[int], str | None],
) -> Walk:
    """Each entry in order, against its hash and the ledger's rules, growing the tree as it goes.

    This is the verifier's hot loop (a few microseconds an entry): the canonical entry of
    `ledger.leaf_bytes` and the hashing of `log.leaf_hash` and of the tree's nodes are written out
    here rather than called. `wanted`: the sizes at which to keep the subtrees (the checkpoints').
    A resolution names its hold by pk: the holds placed in this stretch are known by then, others
    (placed before it) are asked for with `hold_id`.
    """
    walk = Walk(Books(open_start=first > 1), first - 1)
    add, levels, nodes, sha256 = walk.books.add, walk.levels, walk.nodes, hashlib.sha256
    quoted = {n: json_str(name) for n, name in names.items()}
    placed: dict[int, str] = {}  # pk -> id of the holds placed in this stretch, until resolved
    size = first - 1
    for e in entries:
        seq, tid, kind = e[0], e[2], e[3]
        if seq != size + 1:
            walk.problem = f"log entry {size + 1} is missing (next is {seq})"
            break
        if kind is None:
            walk.problem = f"log entry {seq}: its transfer row is missing (deleted)"
            break
        hold_pk = e[8]
        if hold_pk is None:
            hold = None
            if kind == "pending":
                placed[e[12]] = tid
        elif (hold := placed.pop(hold_pk, None)) is None:
            hold = hold_id(hold_pk)
        expires = e[9]
        entry = (
            f'{{"seq":{seq},"id":"{tid}","kind":"{kind}","code":"{e[4]}","amount":{e[5]},'
            f'"debit":{quoted.get(e[6], UNKNOWN)},"credit":{quoted.get(e[7], UNKNOWN)},'
            f'"hold":{"null" if hold is None else f"{QUOTE}{hold}{QUOTE}"},'
            f'"expires":{"null" if expires is None else expires},"ts":{e[10]},"meta":{e[11]}}}'
        ).encode()
        node = sha256(b"\x00" + entry).digest()
        if node != e[1]:
            walk.problem = (
                f"log entry {seq} ({tid}): the transfer does not match its log hash "
                "(altered, or moved from another position)"
            )
            break
        try:
            add(tid, kind, e[5], names.get(e[6], "?"), names.get(e[7], "?"), hold)
        except ValueError as exc:
            walk.problem = f"log entry {seq}: {exc}"
            break
        # A node at `level` whose place at that level (`index`) is odd is a right child: its
        # sibling is the node before it, when the stretch holds that one whole.
        index, level = size, 0
        while index & 1 and levels and levels[-1] == level:
            levels.pop()
            node = sha256(b"\x01" + nodes.pop() + node).digest()
            index >>= 1
            level += 1
        levels.append(level)
        nodes.append(node)
        size = seq
        if size in wanted:
            walk.at[size] = list(zip(levels, nodes, strict=True))
    walk.size = size
    return walk


QUOTE = '"'
UNKNOWN = json_str("?")  # an account id with no account: its entry cannot match its hash


# The helper process -----------------------------------------------------------------------------


@dataclass
class Request:
    """What the helper replays: entries `first`..`last` of the database at `address`."""

    address: tuple[str, str]  # ("sqlite", path) or ("postgres", dsn)
    first: int
    last: int
    wanted: set[int]


def start_helper(request: Request) -> subprocess.Popen[bytes]:
    """The helper, started and given its request; `helper_walk` collects what it found."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "credits.replay"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(pickle.dumps(request))  # small: it fits the pipe, nothing waits
    proc.stdin.flush()
    return proc


def helper_walk(proc: subprocess.Popen[bytes]) -> Walk:
    """The helper's replay, or RuntimeError when it failed (with what it said)."""
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the log replay helper failed: {err.decode(errors='replace')[-500:]}")
    walk: Walk = pickle.loads(out)
    return walk


NAMES = "SELECT id, name FROM ledger_accounts"


def _replay_from(request: Request) -> Walk:
    """The helper's work: its own connection, the account names, then its stretch."""
    kind, where = request.address
    entries = entries_sql(request.first, request.last)
    if kind == "sqlite":
        raw = sqlite3.connect(where, timeout=30)
        try:
            raw.execute("PRAGMA query_only=ON")
            names = dict(raw.execute(NAMES).fetchall())
            hold_id = hold_ids(lambda sql, params: raw.execute(sql, params).fetchone())
            return replay(raw.execute(entries), names, request.first, request.wanted, hold_id)
        finally:
            raw.close()
    import psycopg  # only a PostgreSQL ledger's helper needs it

    with psycopg.connect(where) as conn:
        names = dict(conn.execute(NAMES).fetchall())
        pg_hold_id = hold_ids(
            lambda sql, params: conn.execute(sql.replace(":pk", "%(pk)s"), params).fetchone()
        )
        with conn.cursor(name="entries") as cur:
            cur.itersize = 10_000
            cur.execute(entries)
            return replay(cur, names, request.first, request.wanted, pg_hold_id)


def main() -> None:
    request: Request = pickle.load(sys.stdin.buffer)  # one object: no need to wait for EOF
    walk = _replay_from(request)
    sys.stdout.buffer.write(pickle.dumps(walk, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    # Run as `credits.replay`, not `__main__`, so what it pickles names this module's classes.
    from credits.replay import main as run

    run()

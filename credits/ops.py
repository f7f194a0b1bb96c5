"""The ledger's operations in SQL, as synchronous functions over one connection (`Db`).

Each runs inside a transaction (PostgreSQL) or a savepoint of a group commit (SQLite) that the store
opens, and raises a `CreditsError` to have its writes undone. The SQL is plain, with named parameters,
and the same for both databases: the SQLite writer thread runs it on the raw `sqlite3` connection
(a few microseconds a statement), PostgreSQL through SQLAlchemy's cached `text()` clauses.

Overdrawing is prevented by a conditional update (`... WHERE available >= amount`: one row or
none) on the user's row, and by the CHECK constraint behind it. Operations touch user rows only;
the sequencer keeps the system accounts' counters as it appends entries to the log.

Its size (over 500 lines) is deliberate: every statement the ledger's operations run is here, so the
rules they enforce together (and the query plans tests/credits/test_query_plans.py pins) read in
one place.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Connection, TextClause, text

from credits.errors import (
    CreditsError,
    HoldExpired,
    HoldResolved,
    IdempotencyConflict,
    InsufficientCredits,
    OwesCredits,
    SettleExceedsHold,
    UnknownAccount,
    UnknownHold,
)
from credits.ledger import (
    AccountKind,
    Counters,
    Kind,
    Request,
    System,
    Transfer,
    canonical_metadata,
)

Params = Mapping[str, Any]


class Db(Protocol):
    """The little a ledger operation needs from a connection."""

    def one(self, sql: str, params: Params = ...) -> Sequence[Any] | None: ...
    def all(self, sql: str, params: Params = ...) -> list[Sequence[Any]]: ...
    def rows(self, sql: str, params: Params = ...) -> Iterable[Sequence[Any]]: ...
    def run(self, sql: str, params: Params = ...) -> int: ...
    def insert(self, sql: str, params: Params) -> int | None: ...
    def many(self, sql: str, rows: list[dict[str, Any]]) -> None: ...
    def savepoint(self) -> Any: ...
    def to_log(self, entry: LogEntry) -> None: ...
    def take_log(self) -> list[LogEntry]: ...


# A new transfer as the sequencer appends it: pk, transfer id, kind, code, amount, debit name,
# credit name, hold's transfer id, expires, ts, metadata, debit id, debit kind, credit id, credit
# kind, hold's amount (the columns of `sequencer.QUEUED`).
LogEntry = tuple[Any, ...]
QUEUE_FOR_LOG = "INSERT INTO ledger_log_queue (transfer_pk) VALUES (:pk)"


class SqliteDb:
    """A raw sqlite3 connection (the writer thread's, or a reader's).

    The writer's (`log_in_memory`) hands its new transfers to the sequencer of the same group
    commit in memory, not through `ledger_log_queue`: both happen in one transaction, so there is
    nothing a queue row would keep that the commit does not (and it spares three statements a
    transfer). A rolled-back savepoint forgets the transfers it wrote."""

    def __init__(self, raw: sqlite3.Connection, log_in_memory: bool = False) -> None:
        self.raw = raw
        self._depth = 0
        self._unlogged: list[LogEntry] | None = [] if log_in_memory else None

    def one(self, sql: str, params: Params = {}) -> Sequence[Any] | None:  # noqa: B006
        row: Sequence[Any] | None = self.raw.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Params = {}) -> list[Sequence[Any]]:  # noqa: B006
        return self.raw.execute(sql, params).fetchall()

    def rows(self, sql: str, params: Params = {}) -> Iterable[Sequence[Any]]:  # noqa: B006
        """Rows as they are read, not all at once."""
        return self.raw.execute(sql, params)

    def run(self, sql: str, params: Params = {}) -> int:  # noqa: B006
        return self.raw.execute(sql, params).rowcount

    def insert(self, sql: str, params: Params) -> int | None:
        """The pk of the row `sql` (an INSERT ... ON CONFLICT DO NOTHING) inserted; None when it
        inserted none. Read from the cursor, not with RETURNING, which SQLite serves through a
        temporary table: without it (here and in the conditional update) an operation of the
        group commit runs 7% fewer instructions (callgrind)."""
        cursor = self.raw.execute(sql, params)
        return cursor.lastrowid if cursor.rowcount == 1 else None

    def many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        self.raw.executemany(sql, rows)

    def to_log(self, entry: LogEntry) -> None:
        if self._unlogged is None:
            self.raw.execute(QUEUE_FOR_LOG, {"pk": entry[0]})
        else:
            self._unlogged.append(entry)

    def take_log(self) -> list[LogEntry]:
        taken, self._unlogged = self._unlogged or [], [] if self._unlogged is not None else None
        return taken

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self._depth += 1
        name = f"sp{self._depth}"
        unlogged = len(self._unlogged) if self._unlogged is not None else 0
        self.raw.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.raw.execute(f"ROLLBACK TO {name}")
            self.raw.execute(f"RELEASE {name}")
            if self._unlogged is not None:
                del self._unlogged[unlogged:]
            raise
        else:
            self.raw.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1


_TEXT: dict[str, TextClause] = {}


class SaDb:
    """A SQLAlchemy connection (PostgreSQL through `run_sync`); statements compiled once."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @staticmethod
    def _text(sql: str) -> TextClause:
        clause = _TEXT.get(sql)
        if clause is None:
            clause = _TEXT[sql] = text(sql)
        return clause

    def one(self, sql: str, params: Params = {}) -> Sequence[Any] | None:  # noqa: B006
        return self.conn.execute(self._text(sql), dict(params)).first()

    def all(self, sql: str, params: Params = {}) -> list[Sequence[Any]]:  # noqa: B006
        return list(self.conn.execute(self._text(sql), dict(params)).all())

    def rows(self, sql: str, params: Params = {}) -> Iterable[Sequence[Any]]:  # noqa: B006
        """Rows as they are read, not all at once (a server-side cursor)."""
        conn = self.conn.execution_options(yield_per=10_000)
        return conn.execute(self._text(sql), dict(params))

    def run(self, sql: str, params: Params = {}) -> int:  # noqa: B006
        return int(self.conn.execute(self._text(sql), dict(params)).rowcount)

    def insert(self, sql: str, params: Params) -> int | None:
        """As `SqliteDb.insert` (the table's key is `pk`)."""
        row = self.one(sql + " RETURNING pk", params)
        return None if row is None else int(row[0])

    def many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(self._text(sql), rows)

    def savepoint(self) -> Any:
        return self.conn.begin_nested()

    def to_log(self, entry: LogEntry) -> None:
        """Queued: the sequencer runs in a transaction of its own (`Ledger.sequence`)."""
        self.run(QUEUE_FOR_LOG, {"pk": entry[0]})

    def take_log(self) -> list[LogEntry]:
        return []


# Accounts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    kind: AccountKind
    counters: Counters
    owed: int  # taken back beyond what it had (refunds, disputes); spending waits until covered

    @property
    def side(self) -> Side:
        return Side(self.id, self.name, self.kind.value)


ACCOUNT = (
    "SELECT id, kind, debits_pending, debits_posted, credits_pending, credits_posted, owed "
    "FROM ledger_accounts WHERE name = :name"
)


def find_account(db: Db, name: str) -> Account | None:
    row = db.one(ACCOUNT, {"name": name})
    if row is None:
        return None
    return Account(row[0], name, AccountKind(row[1]), Counters(*row[2:6]), row[6])


def require_account(db: Db, name: str) -> Account:
    found = find_account(db, name)
    if found is None:
        raise UnknownAccount(f"There is no account {name!r}.")
    return found


def open_account(db: Db, name: str, kind: AccountKind, now_us: int) -> Account:
    """The account called `name`, created if missing."""
    found = find_account(db, name)
    if found:
        return found
    db.run(
        "INSERT INTO ledger_accounts (name, kind, created_us) VALUES (:name, :kind, :now) "
        "ON CONFLICT (name) DO NOTHING",
        {"name": name, "kind": kind.value, "now": now_us},
    )
    return require_account(db, name)


# Transfers --------------------------------------------------------------------------------------


class Side(NamedTuple):
    """One side of a transfer, as the log's entry names it."""

    id: int
    name: str
    kind: str


@dataclass(frozen=True)
class Hold:
    """A hold and where it stands."""

    pk: int
    transfer_id: str
    amount: int
    code: str
    metadata: str  # canonical JSON
    expires_us: int
    debit: Side
    credit: Side
    open: bool
    resolved_as: str | None  # the kind of its resolution, once there is one


HOLD = (
    "SELECT h.pk, h.amount, h.code, h.metadata, h.expires_us, d.id, d.name, d.kind, "
    "c.id, c.name, c.kind, o.hold_pk, r.kind "
    "FROM ledger_transfers h "
    "JOIN ledger_accounts d ON d.id = h.debit_id JOIN ledger_accounts c ON c.id = h.credit_id "
    "LEFT JOIN ledger_open_holds o ON o.hold_pk = h.pk "
    "LEFT JOIN ledger_transfers r ON r.hold_pk = h.pk "
    "WHERE h.transfer_id = :id AND h.kind = 'pending'"
)


def find_hold(db: Db, transfer_id: str) -> Hold | None:
    r = db.one(HOLD, {"id": transfer_id})
    if r is None:
        return None
    return Hold(
        r[0], transfer_id, r[1], r[2], r[3], r[4], Side(r[5], r[6], r[7]), Side(r[8], r[9], r[10]),
        r[11] is not None, r[12],
    )  # fmt: skip


def has_due_holds(db: Db, account: str, now_us: int) -> bool:
    """Whether `account` has a hold past its timeout that nothing has resolved yet."""
    return (
        db.one(
            "SELECT 1 FROM ledger_open_holds o JOIN ledger_accounts a ON a.id = o.account_id "
            "WHERE a.name = :name AND o.expires_us <= :now LIMIT 1",
            {"name": account, "now": now_us},
        )
        is not None
    )


def record(db: Db, req: Request, now_us: int) -> Transfer:
    """Carry out `req` once: a repeat of the same request returns the first result."""
    return record_new(db, req, now_us)[0]


def record_new(db: Db, req: Request, now_us: int) -> tuple[Transfer, bool]:
    """As `record`, and whether this call created the transfer (False: a repeat).

    A new request costs no lookup of its id: the insert of its row finds a repeat (the id is
    taken), and a refusal looks for one before it is raised. A refusal leaves writes behind for
    the savepoint or transaction around it to undo, as every `CreditsError` does."""
    if req.kind in (Kind.POSTED, Kind.PENDING):
        return _move(db, req, now_us)
    return resolve_hold(db, req, find_hold(db, req.hold or ""), now_us)


def _existing(db: Db, req: Request) -> Transfer | None:
    """The first result of this id, if the same request was carried out before."""
    row = db.one(
        "SELECT fingerprint FROM ledger_transfers WHERE transfer_id = :id", {"id": req.transfer_id}
    )
    if row is None:
        return None
    if row[0] != req.fingerprint:
        raise IdempotencyConflict(
            f"Transfer id {req.transfer_id!r} was already used for a different request."
        )
    return get_transfer(db, req.transfer_id)


def _repeat_or(db: Db, req: Request, refusal: CreditsError) -> tuple[Transfer, bool]:
    """The first result of a repeated request; for a request never made, `refusal`."""
    existing = _existing(db, req)
    if existing is None:
        raise refusal
    return existing, False


_ACCOUNT_ROW = (
    "SELECT id, kind, debits_pending, debits_posted, credits_pending, credits_posted, name, owed "
    "FROM ledger_accounts WHERE name = "
)
# Two lookups, not `name IN (...)`: SQLite builds a temporary table for an IN list.
TWO_ACCOUNTS = f"{_ACCOUNT_ROW}:debit UNION ALL {_ACCOUNT_ROW}:credit"


def _move(db: Db, req: Request, now_us: int) -> tuple[Transfer, bool]:
    rows = {r[6]: r for r in db.all(TWO_ACCOUNTS, {"debit": req.debit, "credit": req.credit})}
    debit, credit = _account(rows.get(req.debit)), _account(rows.get(req.credit))
    if debit is None:
        if req.debit.startswith("user:"):  # never given credits: has none to spend
            return _repeat_or(
                db, req, InsufficientCredits(f"{req.debit} has no credits.", 0, req.amount)
            )
        return _repeat_or(db, req, UnknownAccount(f"There is no account {req.debit!r}."))
    if credit is None:
        return _repeat_or(db, req, UnknownAccount(f"There is no account {req.credit!r}."))
    pending = req.kind is Kind.PENDING
    expires = now_us + (req.timeout_s or 0) * 1_000_000 if pending else None
    pk = _insert(db, req, req.amount, debit.side, credit.side, None, expires, now_us)
    if pk is None:  # the id is taken: a repeat of this request, or a conflict
        return _repeat_or(
            db, req, IdempotencyConflict(f"Transfer id {req.transfer_id!r} is taken.")
        )
    side = "pending" if pending else "posted"
    for account in sorted((debit, credit), key=lambda a: a.id):  # one lock order everywhere
        if account.kind is not AccountKind.USER:
            continue
        if account is debit:
            done = db.run(
                f"UPDATE ledger_accounts SET debits_{side} = debits_{side} + :amount "
                "WHERE id = :id AND credits_posted - debits_posted - debits_pending >= :amount"
                + (" AND owed = 0" if pending else ""),  # a hold is spending: not while owing
                {"amount": req.amount, "id": account.id},
            )
            if done == 0:
                now = require_account(db, account.name)
                if pending and now.owed:
                    raise OwesCredits(
                        f"{account.name} owes {now.owed} units; nothing can be spent until "
                        "covered.",
                        owed=now.owed,
                        needed=req.amount,
                    )
                available = now.counters.available
                raise InsufficientCredits(
                    f"{account.name} has {available} units available, {req.amount} needed.",
                    available=available,
                    needed=req.amount,
                )
        else:
            db.run(
                f"UPDATE ledger_accounts SET credits_{side} = credits_{side} + :amount "
                "WHERE id = :id",
                {"amount": req.amount, "id": account.id},
            )
    if pending:
        db.run(
            "INSERT INTO ledger_open_holds (hold_pk, account_id, expires_us) "
            "VALUES (:pk, :account, :expires)",
            {"pk": pk, "account": debit.id, "expires": expires},
        )
    return Transfer(
        req.transfer_id, req.kind, req.code, req.amount, req.debit, req.credit, now_us,
        None, expires, req.metadata, None, pk,
    ), True  # fmt: skip


def claw_back(db: Db, req: Request, now_us: int) -> tuple[Transfer, bool]:
    """Take back `req.amount` from the user `req.debit`: what is available now is posted under
    `req.transfer_id` (the amount in its metadata as `asked`, the rest as `owed`), the rest is
    added to what the account owes. A repeat of the same request returns the first result."""
    if (first := _claw_back_made(db, req)) is not None:
        return first, False
    # Lock the row first (PostgreSQL), so that what is taken is what is available now.
    db.run("UPDATE ledger_accounts SET owed = owed WHERE name = :name", {"name": req.debit})
    account = require_account(db, req.debit)
    take = min(req.amount, max(account.counters.available, 0))
    metadata = json.loads(req.metadata) | {"asked": req.amount, "owed": req.amount - take}
    try:
        done, created = _move(
            db, replace(req, amount=take, metadata=canonical_metadata(metadata)), now_us
        )
    except IdempotencyConflict:  # made meanwhile (PostgreSQL), from what was available then
        created = False
    if not created:
        first = _claw_back_made(db, req)
        assert first is not None
        return first, False
    if req.amount > take:
        db.run(
            "UPDATE ledger_accounts SET owed = owed + :owed WHERE id = :id",
            {"owed": req.amount - take, "id": account.id},
        )
    return done, created


def _claw_back_made(db: Db, req: Request) -> Transfer | None:
    """The claw-back made before under this id, if it was this request."""
    first = get_transfer(db, req.transfer_id)
    if first is None:
        return None
    said = {k: v for k, v in first.meta.items() if k not in ("asked", "owed")}
    same = (first.code, first.debit, first.credit) == (req.code, req.debit, req.credit)
    if not same or said != json.loads(req.metadata) or first.meta.get("asked") != req.amount:
        raise IdempotencyConflict(
            f"Transfer id {req.transfer_id!r} was already used for a different request."
        )
    return first


def cover_owed(db: Db, account: str, after: Transfer, now_us: int) -> Transfer | None:
    """Credits just arrived on `account` (by `after`): what it owes is covered from them first,
    by a transfer of its own (`owed:<pk of after>`). None when nothing was owed or available."""
    found = require_account(db, account)
    debt = found.owed
    cover = min(debt, max(found.counters.available, 0))
    if cover == 0:
        return None
    req = Request(
        f"owed:{after.pk}", Kind.POSTED, "owed", cover, account, System.CLAWBACKS.value,
        metadata=canonical_metadata({"covers": after.transfer_id, "owed_before": debt}),
    )  # fmt: skip
    done = record(db, req, now_us)
    db.run(
        "UPDATE ledger_accounts SET owed = owed - :cover WHERE id = :id",
        {"cover": cover, "id": found.id},
    )
    return done


def _account(row: Sequence[Any] | None) -> Account | None:
    if row is None:
        return None
    return Account(row[0], row[6], AccountKind(row[1]), Counters(*row[2:6]), row[7])


def resolve_hold(db: Db, req: Request, hold: Hold | None, now_us: int) -> tuple[Transfer, bool]:
    """Carry out the resolution `req` of `hold` (as `find_hold` found it) once; as `record_new`."""
    if hold is None:
        return _repeat_or(db, req, UnknownHold(f"There is no hold {req.hold!r}."))
    if hold.resolved_as is not None or not hold.open:
        return _repeat_or(db, req, resolved_error(req.hold, hold.resolved_as))
    if req.kind is Kind.POST:
        if hold.expires_us <= now_us:
            expired = HoldExpired(f"Hold {req.hold!r} expired; it can no longer be settled.")
            return _repeat_or(db, req, expired)
        if req.amount > hold.amount:
            too_much = f"Cannot settle {req.amount} units on hold {req.hold!r} of {hold.amount}."
            return _repeat_or(db, req, SettleExceedsHold(too_much))
    # Claim the hold: of concurrent resolutions, one deletes this row; the others find it gone.
    if db.run("DELETE FROM ledger_open_holds WHERE hold_pk = :pk", {"pk": hold.pk}) == 0:
        again = find_hold(db, hold.transfer_id)
        return _repeat_or(db, req, resolved_error(req.hold, again.resolved_as if again else None))
    posted = req.amount if req.kind is Kind.POST else 0
    for side, which in sorted(((hold.debit, "debits"), (hold.credit, "credits"))):
        if side.kind == AccountKind.USER.value:
            db.run(
                f"UPDATE ledger_accounts SET {which}_pending = {which}_pending - :held, "
                f"{which}_posted = {which}_posted + :posted WHERE id = :id",
                {"held": hold.amount, "posted": posted, "id": side.id},
            )
    amount = posted if req.kind is Kind.POST else hold.amount
    new_pk = _insert(db, req, amount, hold.debit, hold.credit, hold, None, now_us)
    if new_pk is None:  # the hold was open, so its resolution is not this: another transfer's id
        raise IdempotencyConflict(
            f"Transfer id {req.transfer_id!r} was already used for a different request."
        )
    return Transfer(
        req.transfer_id, req.kind, req.code, amount, hold.debit.name, hold.credit.name, now_us,
        req.hold, None, req.metadata, None, new_pk,
    ), True  # fmt: skip


def resolved_error(hold: str | None, done: str | None) -> HoldExpired | HoldResolved:
    if done == Kind.EXPIRE.value:
        return HoldExpired(f"Hold {hold!r} expired; its credits were returned.")
    return HoldResolved(f"Hold {hold!r} was already {_past(done)}.")


def _past(kind: str | None) -> str:
    return {"post": "settled", "void": "released", "expire": "expired"}.get(kind or "", "resolved")


NEW_TRANSFER = (
    "INSERT INTO ledger_transfers (transfer_id, kind, code, amount, debit_id, credit_id, "
    "hold_pk, expires_us, ts_us, metadata, fingerprint) VALUES (:id, :kind, :code, :amount, "
    ":debit, :credit, :hold, :expires, :ts, :meta, :fp) "
    "ON CONFLICT (transfer_id) DO NOTHING"
)


def _insert(
    db: Db,
    req: Request,
    amount: int,
    debit: Side,
    credit: Side,
    hold: Hold | None,
    expires_us: int | None,
    now_us: int,
) -> int | None:
    """The new transfer's row, handed on to the log; None when its id is taken."""
    pk = db.insert(
        NEW_TRANSFER,
        {
            "id": req.transfer_id, "kind": req.kind.value, "code": req.code, "amount": amount,
            "debit": debit.id, "credit": credit.id, "hold": hold.pk if hold else None,
            "expires": expires_us, "ts": now_us, "meta": req.metadata, "fp": req.fingerprint,
        },
    )  # fmt: skip
    if pk is None:
        return None
    db.to_log((
        pk, req.transfer_id, req.kind.value, req.code, amount, debit.name, credit.name,
        hold.transfer_id if hold else None, expires_us, now_us, req.metadata,
        debit.id, debit.kind, credit.id, credit.kind, hold.amount if hold else None,
    ))  # fmt: skip
    return pk


TRANSFERS = (
    "SELECT t.transfer_id, t.kind, t.code, t.amount, d.name, c.name, t.ts_us, h.transfer_id, "
    "t.expires_us, t.metadata, l.seq, t.pk "
    "FROM ledger_transfers t "
    "JOIN ledger_accounts d ON d.id = t.debit_id JOIN ledger_accounts c ON c.id = t.credit_id "
    "LEFT JOIN ledger_transfers h ON h.pk = t.hold_pk "
    "LEFT JOIN ledger_log l ON l.transfer_pk = t.pk "
)


def _transfer(r: Sequence[Any]) -> Transfer:
    return Transfer(r[0], Kind(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])


def get_transfer(db: Db, transfer_id: str) -> Transfer | None:
    row = db.one(TRANSFERS + "WHERE t.transfer_id = :id", {"id": transfer_id})
    return _transfer(row) if row else None


def history(
    db: Db,
    account_id: int,
    limit: int,
    before: int | None,
    codes: Sequence[str] | None,
    since_us: int | None,
    until_us: int | None,
) -> list[Transfer]:
    """An account's transfers, newest first."""
    where = ["(t.debit_id = :account OR t.credit_id = :account)"]
    params: dict[str, Any] = {"account": account_id, "limit": limit}
    if before is not None:
        where.append("t.pk < :before")
        params["before"] = before
    if codes:
        names = [f"code{i}" for i in range(len(codes))]
        where.append(f"t.code IN ({', '.join(':' + n for n in names)})")
        params.update(zip(names, codes, strict=True))
    if since_us is not None:
        where.append("t.ts_us >= :since")
        params["since"] = since_us
    if until_us is not None:
        where.append("t.ts_us < :until")
        params["until"] = until_us
    sql = TRANSFERS + "WHERE " + " AND ".join(where) + " ORDER BY t.pk DESC LIMIT :limit"
    return [_transfer(r) for r in db.all(sql, params)]


def due_holds(db: Db, now_us: int, account_id: int | None = None) -> list[Transfer]:
    """Holds past their timeout that nothing has resolved yet."""
    sql = TRANSFERS + "JOIN ledger_open_holds o ON o.hold_pk = t.pk WHERE o.expires_us <= :now"
    params: dict[str, Any] = {"now": now_us}
    if account_id is not None:
        sql += " AND o.account_id = :account"
        params["account"] = account_id
    return [_transfer(r) for r in db.all(sql + " ORDER BY o.expires_us LIMIT 1000", params)]

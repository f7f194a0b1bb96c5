"""The ledger's operations in SQL, as synchronous functions over one connection (`Db`).

Each runs inside a transaction (PostgreSQL) or a savepoint of a group commit (SQLite) that the store
opens, and raises a `CreditsError` to have its writes undone. The SQL is plain, with named parameters,
and the same for both databases: the SQLite writer thread runs it on the raw `sqlite3` connection
(a few microseconds a statement), PostgreSQL through SQLAlchemy's cached `text()` clauses.

Overdrawing is prevented by a conditional update (`... WHERE available >= amount RETURNING`) on the
user's row, and by the CHECK constraint behind it. Operations touch user rows only; the sequencer
keeps the system accounts' counters as it appends entries to the log.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, TextClause, text

from credits.errors import (
    HoldExpired,
    HoldResolved,
    IdempotencyConflict,
    InsufficientCredits,
    SettleExceedsHold,
    UnknownAccount,
    UnknownHold,
)
from credits.ledger import AccountKind, Counters, Kind, Request, Transfer

Params = Mapping[str, Any]


class Db(Protocol):
    """The little a ledger operation needs from a connection."""

    def one(self, sql: str, params: Params = ...) -> Sequence[Any] | None: ...
    def all(self, sql: str, params: Params = ...) -> list[Sequence[Any]]: ...
    def rows(self, sql: str, params: Params = ...) -> Iterable[Sequence[Any]]: ...
    def run(self, sql: str, params: Params = ...) -> int: ...
    def many(self, sql: str, rows: list[dict[str, Any]]) -> None: ...
    def savepoint(self) -> Any: ...


class SqliteDb:
    """A raw sqlite3 connection (the writer thread's, or a reader's)."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self._depth = 0

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

    def many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        self.raw.executemany(sql, rows)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self._depth += 1
        name = f"sp{self._depth}"
        self.raw.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.raw.execute(f"ROLLBACK TO {name}")
            self.raw.execute(f"RELEASE {name}")
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

    def many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(self._text(sql), rows)

    def savepoint(self) -> Any:
        return self.conn.begin_nested()


# Accounts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    kind: AccountKind
    counters: Counters


ACCOUNT = (
    "SELECT id, kind, debits_pending, debits_posted, credits_pending, credits_posted "
    "FROM ledger_accounts WHERE name = :name"
)


def find_account(db: Db, name: str) -> Account | None:
    row = db.one(ACCOUNT, {"name": name})
    if row is None:
        return None
    return Account(row[0], name, AccountKind(row[1]), Counters(*row[2:6]))


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


def record(db: Db, req: Request, now_us: int) -> Transfer:
    """Carry out `req` once: a repeat of the same request returns the first result."""
    return record_new(db, req, now_us)[0]


def record_new(db: Db, req: Request, now_us: int) -> tuple[Transfer, bool]:
    """As `record`, and whether this call created the transfer (False: a repeat)."""
    existing = _existing(db, req)
    if existing is not None:
        return existing, False
    if req.kind in (Kind.POSTED, Kind.PENDING):
        return _move(db, req, now_us), True
    return _resolve(db, req, now_us), True


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


def _move(db: Db, req: Request, now_us: int) -> Transfer:
    debit = find_account(db, req.debit)
    if debit is None:
        if req.debit.startswith("user:"):  # never given credits: has none to spend
            raise InsufficientCredits(f"{req.debit} has no credits.", 0, req.amount)
        raise UnknownAccount(f"There is no account {req.debit!r}.")
    credit = require_account(db, req.credit)
    pending = req.kind is Kind.PENDING
    side = "pending" if pending else "posted"
    for account in sorted((debit, credit), key=lambda a: a.id):  # one lock order everywhere
        if account.kind is not AccountKind.USER:
            continue
        if account is debit:
            done = db.one(
                f"UPDATE ledger_accounts SET debits_{side} = debits_{side} + :amount "
                "WHERE id = :id AND credits_posted - debits_posted - debits_pending >= :amount "
                "RETURNING id",
                {"amount": req.amount, "id": account.id},
            )
            if done is None:
                now = require_account(db, account.name).counters.available
                raise InsufficientCredits(
                    f"{account.name} has {now} units available, {req.amount} needed.",
                    available=now,
                    needed=req.amount,
                )
        else:
            db.run(
                f"UPDATE ledger_accounts SET credits_{side} = credits_{side} + :amount "
                "WHERE id = :id",
                {"amount": req.amount, "id": account.id},
            )
    expires = now_us + (req.timeout_s or 0) * 1_000_000 if pending else None
    pk = _insert(db, req, req.amount, debit.id, credit.id, None, expires, now_us)
    if pending:
        db.run(
            "INSERT INTO ledger_open_holds (hold_pk, account_id, expires_us) "
            "VALUES (:pk, :account, :expires)",
            {"pk": pk, "account": debit.id, "expires": expires},
        )
    return Transfer(
        req.transfer_id, req.kind, req.code, req.amount, req.debit, req.credit, now_us,
        None, expires, req.metadata, None, pk,
    )  # fmt: skip


HOLD = (
    "SELECT h.pk, h.amount, h.debit_id, h.credit_id, h.expires_us, d.kind, c.kind, "
    "o.hold_pk, r.kind "
    "FROM ledger_transfers h "
    "JOIN ledger_accounts d ON d.id = h.debit_id JOIN ledger_accounts c ON c.id = h.credit_id "
    "LEFT JOIN ledger_open_holds o ON o.hold_pk = h.pk "
    "LEFT JOIN ledger_transfers r ON r.hold_pk = h.pk "
    "WHERE h.transfer_id = :id AND h.kind = 'pending'"
)


def _resolve(db: Db, req: Request, now_us: int) -> Transfer:
    hold = db.one(HOLD, {"id": req.hold})
    if hold is None:
        raise UnknownHold(f"There is no hold {req.hold!r}.")
    pk, held, debit_id, credit_id, expires, debit_kind, credit_kind, still_open, done = hold
    if done is not None or still_open is None:
        return _resolved_already(db, req, done)
    if req.kind is Kind.POST:
        if expires <= now_us:
            raise HoldExpired(f"Hold {req.hold!r} expired; it can no longer be settled.")
        if req.amount > held:
            raise SettleExceedsHold(
                f"Cannot settle {req.amount} units on hold {req.hold!r} of {held}."
            )
    # Claim the hold: of concurrent resolutions, one deletes this row; the others find it gone.
    if db.run("DELETE FROM ledger_open_holds WHERE hold_pk = :pk", {"pk": pk}) == 0:
        again = db.one(HOLD, {"id": req.hold})
        return _resolved_already(db, req, again[8] if again else None)
    posted = req.amount if req.kind is Kind.POST else 0
    for account_id, side, kind in sorted(
        ((debit_id, "debits", debit_kind), (credit_id, "credits", credit_kind))
    ):
        if kind == AccountKind.USER.value:
            db.run(
                f"UPDATE ledger_accounts SET {side}_pending = {side}_pending - :held, "
                f"{side}_posted = {side}_posted + :posted WHERE id = :id",
                {"held": held, "posted": posted, "id": account_id},
            )
    amount = posted if req.kind is Kind.POST else held
    new_pk = _insert(db, req, amount, debit_id, credit_id, pk, None, now_us)
    return Transfer(
        req.transfer_id, req.kind, req.code, amount, req.debit, req.credit, now_us,
        req.hold, None, req.metadata, None, new_pk,
    )  # fmt: skip


def _resolved_already(db: Db, req: Request, done: str | None) -> Transfer:
    """A resolved hold: the same request again gets its first result, anything else an error."""
    existing = _existing(db, req)  # an identical request may have committed a moment ago
    if existing is not None:
        return existing
    raise resolved_error(req.hold, done)


def resolved_error(hold: str | None, done: str | None) -> HoldExpired | HoldResolved:
    if done == Kind.EXPIRE.value:
        return HoldExpired(f"Hold {hold!r} expired; its credits were returned.")
    return HoldResolved(f"Hold {hold!r} was already {_past(done)}.")


def _past(kind: str | None) -> str:
    return {"post": "settled", "void": "released", "expire": "expired"}.get(kind or "", "resolved")


def _insert(
    db: Db,
    req: Request,
    amount: int,
    debit_id: int,
    credit_id: int,
    hold_pk: int | None,
    expires_us: int | None,
    now_us: int,
) -> int:
    row = db.one(
        "INSERT INTO ledger_transfers (transfer_id, kind, code, amount, debit_id, credit_id, "
        "hold_pk, expires_us, ts_us, metadata, fingerprint) VALUES (:id, :kind, :code, :amount, "
        ":debit, :credit, :hold, :expires, :ts, :meta, :fp) RETURNING pk",
        {
            "id": req.transfer_id, "kind": req.kind.value, "code": req.code, "amount": amount,
            "debit": debit_id, "credit": credit_id, "hold": hold_pk, "expires": expires_us,
            "ts": now_us, "meta": req.metadata, "fp": req.fingerprint,
        },
    )  # fmt: skip
    assert row is not None
    db.run("INSERT INTO ledger_log_queue (transfer_pk) VALUES (:pk)", {"pk": row[0]})
    return int(row[0])


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

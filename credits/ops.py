"""The ledger's operations in SQL, as synchronous functions over one SQLAlchemy connection.

Each runs inside a transaction (PostgreSQL) or a savepoint of a group commit (SQLite) that the store
opens, and raises a `CreditsError` to have its writes undone. The same code serves both databases:
the SQLite writer thread calls it directly, PostgreSQL through `AsyncConnection.run_sync`.

Overdrawing is prevented by a conditional update (`... WHERE available >= amount RETURNING`) on the
user's row, and by the CHECK constraint behind it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import aliased

from credits import log
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
from credits.schema import accounts, checkpoints, log_head, transfers
from credits.schema import log as log_table

A = accounts.c
T = transfers.c


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    kind: AccountKind
    counters: Counters


def open_account(conn: Connection, name: str, kind: AccountKind, now_us: int) -> Account:
    """The account called `name`, created if missing."""
    found = find_account(conn, name)
    if found:
        return found
    conn.execute(insert(accounts).values(name=name, kind=kind.value, created_us=now_us))
    created = find_account(conn, name)
    assert created is not None
    return created


def find_account(conn: Connection, name: str) -> Account | None:
    row = conn.execute(
        select(
            A.id, A.kind, A.debits_pending, A.debits_posted, A.credits_pending, A.credits_posted
        ).where(A.name == name)
    ).first()
    if row is None:
        return None
    return Account(row.id, name, AccountKind(row.kind), Counters(*row[2:]))


def require_account(conn: Connection, name: str) -> Account:
    found = find_account(conn, name)
    if found is None:
        raise UnknownAccount(f"There is no account {name!r}.")
    return found


def record(conn: Connection, req: Request, now_us: int) -> Transfer:
    """Carry out `req` once: a repeat of the same request returns the first result."""
    existing = _existing(conn, req)
    if existing is not None:
        return existing
    if req.kind in (Kind.POSTED, Kind.PENDING):
        return _move(conn, req, now_us)
    return _resolve(conn, req, now_us)


def _existing(conn: Connection, req: Request) -> Transfer | None:
    row = conn.execute(select(T.fingerprint).where(T.transfer_id == req.transfer_id)).first()
    if row is None:
        return None
    if row.fingerprint != req.fingerprint():
        raise IdempotencyConflict(
            f"Transfer id {req.transfer_id!r} was already used for a different request."
        )
    found = get_transfer(conn, req.transfer_id)
    assert found is not None
    return found


def _move(conn: Connection, req: Request, now_us: int) -> Transfer:
    debit = find_account(conn, req.debit)
    if debit is None:
        if req.debit.startswith("user:"):  # never given credits: has none to spend
            raise InsufficientCredits(f"{req.debit} has no credits.", 0, req.amount)
        raise UnknownAccount(f"There is no account {req.debit!r}.")
    credit = require_account(conn, req.credit)
    pending = req.kind is Kind.PENDING
    for account in sorted((debit, credit), key=lambda a: a.id):  # one lock order everywhere
        if account.kind is not AccountKind.USER:
            continue
        if account is debit:
            _debit_user(conn, account, req.amount, pending)
        else:
            column = "credits_pending" if pending else "credits_posted"
            conn.execute(
                update(accounts)
                .where(A.id == account.id)
                .values({column: getattr(A, column) + req.amount})
            )
    expires = now_us + (req.timeout_s or 0) * 1_000_000 if pending else None
    return _insert(conn, req, debit.id, credit.id, None, expires, now_us)


def _debit_user(conn: Connection, account: Account, amount: int, pending: bool) -> None:
    column = "debits_pending" if pending else "debits_posted"
    available = A.credits_posted - A.debits_posted - A.debits_pending
    done = conn.execute(
        update(accounts)
        .where(A.id == account.id, available >= amount)
        .values({column: getattr(A, column) + amount})
        .returning(A.id)
    ).first()
    if done is None:
        now = require_account(conn, account.name).counters.available
        raise InsufficientCredits(
            f"{account.name} has {now} units available, {amount} needed.",
            available=now,
            needed=amount,
        )


def _resolve(conn: Connection, req: Request, now_us: int) -> Transfer:
    hold = conn.execute(
        select(T.pk, T.amount, T.debit_id, T.credit_id, T.expires_us).where(
            T.transfer_id == req.hold, T.kind == Kind.PENDING.value
        )
    ).first()
    if hold is None:
        raise UnknownHold(f"There is no hold {req.hold!r}.")
    done = conn.execute(select(T.kind).where(T.hold_pk == hold.pk)).first()
    if done is not None:
        if done.kind == Kind.EXPIRE.value:
            raise HoldExpired(f"Hold {req.hold!r} expired; its credits were returned.")
        raise HoldResolved(f"Hold {req.hold!r} was already {_past(done.kind)}.")
    if req.kind is Kind.POST:
        if hold.expires_us <= now_us:
            raise HoldExpired(f"Hold {req.hold!r} expired; it can no longer be settled.")
        if req.amount > hold.amount:
            raise SettleExceedsHold(
                f"Cannot settle {req.amount} units on hold {req.hold!r} of {hold.amount}."
            )
    posted = req.amount if req.kind is Kind.POST else 0
    for account_id, side in sorted(((hold.debit_id, "debits"), (hold.credit_id, "credits"))):
        kind = conn.execute(select(A.kind).where(A.id == account_id)).scalar_one()
        if kind != AccountKind.USER.value:
            continue
        pending_col, posted_col = getattr(A, f"{side}_pending"), getattr(A, f"{side}_posted")
        conn.execute(
            update(accounts)
            .where(A.id == account_id)
            .values({pending_col: pending_col - hold.amount, posted_col: posted_col + posted})
        )
    amount = posted if req.kind is Kind.POST else hold.amount
    return _insert(conn, req, hold.debit_id, hold.credit_id, hold.pk, None, now_us, amount=amount)


def _past(kind: str) -> str:
    return {"post": "settled", "void": "released", "expire": "expired"}[kind]


def _insert(
    conn: Connection,
    req: Request,
    debit_id: int,
    credit_id: int,
    hold_pk: int | None,
    expires_us: int | None,
    now_us: int,
    amount: int | None = None,
) -> Transfer:
    conn.execute(
        insert(transfers).values(
            transfer_id=req.transfer_id,
            kind=req.kind.value,
            code=req.code,
            amount=req.amount if amount is None else amount,
            debit_id=debit_id,
            credit_id=credit_id,
            hold_pk=hold_pk,
            expires_us=expires_us,
            ts_us=now_us,
            metadata=req.metadata,
            fingerprint=req.fingerprint(),
        )
    )
    found = get_transfer(conn, req.transfer_id)
    assert found is not None
    return found


def get_transfer(conn: Connection, transfer_id: str) -> Transfer | None:
    rows = transfer_rows(conn, T.transfer_id == transfer_id)
    return rows[0] if rows else None


def transfer_rows(conn: Connection, *where: object, limit: int | None = None) -> list[Transfer]:
    """Transfers with account names, hold ids and log positions, newest first."""
    debit, credit, hold = aliased(accounts), aliased(accounts), aliased(transfers)
    query = (
        select(
            T.transfer_id, T.kind, T.code, T.amount, debit.c.name, credit.c.name, T.ts_us,
            hold.c.transfer_id, T.expires_us, T.metadata, log_table.c.seq, T.pk,
        )
        .join(debit, debit.c.id == T.debit_id)
        .join(credit, credit.c.id == T.credit_id)
        .outerjoin(hold, hold.c.pk == T.hold_pk)
        .outerjoin(log_table, log_table.c.transfer_pk == T.pk)
        .where(*where)  # type: ignore[arg-type]
        .order_by(T.pk.desc())
        .limit(limit)
    )  # fmt: skip
    return [
        Transfer(r[0], Kind(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])
        for r in conn.execute(query)
    ]


def due_holds(conn: Connection, now_us: int, account: str | None = None) -> list[Transfer]:
    """Holds past their timeout that nothing has resolved yet."""
    resolution = aliased(transfers)
    query = (
        select(T.transfer_id)
        .outerjoin(resolution, resolution.c.hold_pk == T.pk)
        .where(T.kind == Kind.PENDING.value, T.expires_us <= now_us, resolution.c.pk.is_(None))
        .limit(1000)
    )
    if account is not None:
        query = query.join(accounts, A.id == T.debit_id).where(A.name == account)
    ids = [r.transfer_id for r in conn.execute(query)]
    return [t for i in ids if (t := get_transfer(conn, i)) is not None]


# The log sequencer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    key: log.Ed25519PrivateKey
    every_entries: int
    every_us: int


def sequence(conn: Connection, now_us: int, signer: Signer) -> list[log.Checkpoint]:
    """Append unsequenced transfers to the log in commit order, keep system counters, checkpoint.

    Runs under the log head's row lock, so one sequencer at a time appends, whatever the process.
    """
    head = conn.execute(select(log_head).where(log_head.c.id == 1).with_for_update()).one()
    size, frontier = head.size, [bytes.fromhex(h) for h in json.loads(head.frontier)]
    hold = aliased(transfers)
    debit, credit = aliased(accounts), aliased(accounts)
    rows = conn.execute(
        select(
            T.pk, T.transfer_id, T.kind, T.code, T.amount, debit.c.name, credit.c.name,
            hold.c.transfer_id, T.expires_us, T.ts_us, T.metadata,
            debit.c.id, debit.c.kind, credit.c.id, credit.c.kind, hold.c.amount,
        )
        .join(debit, debit.c.id == T.debit_id)
        .join(credit, credit.c.id == T.credit_id)
        .outerjoin(hold, hold.c.pk == T.hold_pk)
        .outerjoin(log_table, log_table.c.transfer_pk == T.pk)
        .where(log_table.c.seq.is_(None))
        .order_by(T.pk)
    ).all()  # fmt: skip
    if not rows:
        return _maybe_checkpoint(conn, head, size, frontier, now_us, signer)
    entries = []
    deltas: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        size += 1
        leaf = log.leaf_hash(
            Transfer(r[1], Kind(r[2]), r[3], r[4], r[5], r[6], r[9], r[7], r[8], r[10]).leaf(size)
        )
        frontier = log.frontier_append(frontier, size - 1, leaf)
        entries.append({"seq": size, "transfer_pk": r[0], "leaf_hash": leaf})
        _system_deltas(deltas, Kind(r[2]), r[4], r[15], (r[11], r[12]), (r[13], r[14]))
    conn.execute(insert(log_table), entries)
    for account_id, (dp, dpo, cp, cpo) in deltas.items():
        conn.execute(
            update(accounts)
            .where(A.id == account_id)
            .values(
                debits_pending=A.debits_pending + dp,
                debits_posted=A.debits_posted + dpo,
                credits_pending=A.credits_pending + cp,
                credits_posted=A.credits_posted + cpo,
            )
        )
    conn.execute(
        update(log_head)
        .where(log_head.c.id == 1)
        .values(size=size, frontier=json.dumps([h.hex() for h in frontier]))
    )
    return _maybe_checkpoint(conn, head, size, frontier, now_us, signer)


def _system_deltas(
    deltas: dict[int, list[int]],
    kind: Kind,
    amount: int,
    held: int | None,
    debit: tuple[int, str],
    credit: tuple[int, str],
) -> None:
    """Counter changes of the system side(s) of one transfer: [dp, dpo, cp, cpo]."""
    for (account_id, account_kind), offset in ((debit, 0), (credit, 2)):
        if account_kind != AccountKind.SYSTEM.value:
            continue
        d = deltas[account_id]
        if kind is Kind.POSTED:
            d[offset + 1] += amount
        elif kind is Kind.PENDING:
            d[offset] += amount
        else:
            d[offset] -= held or 0
            if kind is Kind.POST:
                d[offset + 1] += amount


def _maybe_checkpoint(
    conn: Connection, head: object, size: int, frontier: list[bytes], now_us: int, signer: Signer
) -> list[log.Checkpoint]:
    last_size, last_us = head.checkpoint_size, head.checkpoint_us  # type: ignore[attr-defined]
    if last_us == 0 and size > 0:  # the time rule's clock starts with the first entry
        conn.execute(update(log_head).where(log_head.c.id == 1).values(checkpoint_us=now_us))
        last_us = now_us
    due = size - last_size >= signer.every_entries or (
        size > last_size and now_us - last_us >= signer.every_us
    )
    if not due:
        return []
    return [write_checkpoint(conn, size, frontier, now_us, signer)]


def write_checkpoint(
    conn: Connection, size: int, frontier: list[bytes], now_us: int, signer: Signer
) -> log.Checkpoint:
    cp = log.sign(signer.key, size, log.frontier_root(frontier), now_us)
    conn.execute(
        insert(checkpoints).values(
            size=cp.size, root=cp.root, timestamp_us=cp.timestamp_us, key_id=cp.key_id,
            signature=cp.signature, origin=cp.origin,
        )
    )  # fmt: skip
    conn.execute(
        update(log_head)
        .where(log_head.c.id == 1)
        .values(checkpoint_size=size, checkpoint_us=now_us)
    )
    return cp


def latest_checkpoint(conn: Connection) -> log.Checkpoint | None:
    row = conn.execute(select(checkpoints).order_by(checkpoints.c.size.desc()).limit(1)).first()
    if row is None:
        return None
    return log.Checkpoint(
        row.size, row.root, row.timestamp_us, row.key_id, row.signature, row.origin
    )

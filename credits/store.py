"""The ledger's API: its operations and reads, over either backend (credits/backend.py).

Every rule lives in the database: overdrawing is stopped by a conditional update on the person's
row and a CHECK constraint, ids are unique, and nothing here is state another process needs. Holds
written for callers that were cancelled meanwhile are released at once rather than after their
timeout.

Its size is one method per operation and read, each with its batched PostgreSQL path beside the
general one, so that what a caller may rely on is read in one place.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from credits import log, migrate, ops, postgres, sequencer
from credits.backend import Backend, log_failure, logger, now_us, outlive_caller
from credits.errors import (
    CreditsError,
    HoldExpired,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    SettleExceedsHold,
    UnknownHold,
)
from credits.ledger import (
    AccountKind,
    Balance,
    Kind,
    Request,
    Reservation,
    System,
    Transfer,
    canonical_metadata,
    check_amount,
    check_code,
    check_timeout,
    check_transfer_id,
    expiry,
    hold_request,
    resolution,
    user_account,
)
from credits.ops import Db, SaDb

MIGRATIONS = migrate.MIGRATIONS
__all__ = ["MIGRATIONS", "Ledger", "day_of", "now_us"]


def day_of(ts_us: int) -> str:
    """The UTC day of a transfer's timestamp, YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(ts_us / 1e6))


class Ledger(Backend):
    """The ledger's operations. Amounts are integer units (see `ledger.UNITS_PER_CREDIT`)."""

    async def start(self, background: bool = True, read_only: bool = False) -> None:
        """Migrate, open connections, create the system accounts, start background work (the
        expiry of holds past their timeout; on PostgreSQL, the sequencer).

        `read_only` (verify, audit, receipts from the command line): nothing is written or
        signed, so the ledger can be checked even when the signing key is not the pinned one."""
        await super().start(background, read_only)
        if background and not read_only:
            self._tasks.append(asyncio.create_task(self._every(1.0, self.expire_holds)))
            if not self.sqlite:
                self._tasks.append(asyncio.create_task(self._every(0.2, self.sequence)))

    # Operations ---------------------------------------------------------------------------------

    async def open_account(self, user: str) -> None:
        name, now = user_account(user), self.clock()
        await self._write(lambda c: ops.open_account(c, name, AccountKind.USER, now))

    async def grant(
        self,
        user: str,
        amount: int,
        transfer_id: str,
        code: str = "grant",
        metadata: Mapping[str, Any] | None = None,
        source: System = System.PROMOTIONS,
    ) -> Transfer:
        """Give `user` credits from a system account (the welcome bonus is `welcome:<user>`).
        What the user owes is covered from them first."""
        req = Request(
            check_transfer_id(transfer_id), Kind.POSTED, check_code(code), check_amount(amount),
            source.value, user_account(user), metadata=canonical_metadata(metadata),
        )  # fmt: skip
        now = self.clock()

        def op(c: Db) -> Transfer:
            ops.open_account(c, req.credit, AccountKind.USER, now)
            done, created = ops.record_new(c, req, now)
            if created:
                ops.cover_owed(c, req.credit, done, now)
            return done

        return await self._write(op)

    async def claw_back(
        self,
        user: str,
        amount: int,
        transfer_id: str,
        code: str,
        metadata: Mapping[str, Any] | None = None,
    ) -> Transfer:
        """Take back `amount` of what `user` was given (a refund, a lost dispute): what they have
        available is posted to `System.CLAWBACKS` now, the rest is owed (see credits/ledger.py).
        The transfer's metadata says `asked` and `owed`; a repeat returns the first result."""
        req = Request(
            check_transfer_id(transfer_id), Kind.POSTED, check_code(code), check_amount(amount),
            user_account(user), System.CLAWBACKS.value, metadata=canonical_metadata(metadata),
        )  # fmt: skip
        now = self.clock()
        return await self._write(lambda c: ops.claw_back(c, req, now)[0])

    async def reserve(
        self,
        user: str,
        amount: int,
        transfer_id: str,
        timeout_s: int,
        code: str = "usage",
        metadata: Mapping[str, Any] | None = None,
    ) -> Reservation:
        """Hold `amount` of the user's credits until settled, released, or `timeout_s` passes
        (zero records free work, so that it shows in the person's usage).

        Says whether this call created the hold. A caller cancelled while the hold is written
        does not leave it behind: once written, it is released at once."""
        req = hold_request(
            check_transfer_id(transfer_id), check_amount(amount, allow_zero=True),
            (check_code(code), user_account(user), System.USAGE_REVENUE.value),
            check_timeout(timeout_s), metadata or {},
        )  # fmt: skip
        if self._pg is not None:  # a batch, then maybe the general path: all of it outlives us
            return await outlive_caller(self._reserve(req), self._release_abandoned)
        return await self._reserve(req)

    async def renew(
        self,
        hold_id: str,
        used: int,
        next_id: str,
        amount: int,
        timeout_s: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[Transfer, Reservation]:
        """Charge `used` of the hold `hold_id` (release it when `used` is 0) and hold `amount`
        under `next_id`, for `timeout_s` more, in one transaction: a long piece of work (a task's
        budget) pays for what it has used so far and goes on holding what comes next, more,
        less, or for longer. The new hold has the old one's code and metadata, with `metadata`.

        All or nothing: when the new hold cannot be covered (`InsufficientCredits`) or the old one
        is gone, nothing is written and the old hold stays as it was. The same call again gives
        the same transfers (the reservation says it was not created). A caller cancelled once it
        is written leaves no new hold behind: it is released at once."""
        check_transfer_id(hold_id)
        check_amount(used, allow_zero=True)
        extra = dict(metadata or {})
        canonical_metadata(extra)  # refuse bad metadata before queueing
        check_transfer_id(next_id)
        check_amount(amount, allow_zero=True)
        check_timeout(timeout_s)
        now = self.clock()

        def op(c: Db) -> tuple[Transfer, Transfer, bool]:
            hold = ops.find_hold(c, hold_id)
            if hold is None:
                raise UnknownHold(f"There is no hold {hold_id!r}.")
            held = (hold.code, hold.debit.name, hold.credit.name)
            meta = json.loads(hold.metadata)
            kind = Kind.POST if used else Kind.VOID
            closing = resolution(hold_id, kind, used, held, meta, {"renewed": next_id})
            try:
                closed = ops.record(c, closing, now)
            except IdempotencyConflict:  # resolved otherwise: by another renewal, a settle...
                again = ops.find_hold(c, hold_id)
                raise ops.resolved_error(hold_id, again.resolved_as if again else None) from None
            # Released first: the new hold may use the credits the old one held.
            new = hold_request(next_id, amount, held, timeout_s, {**meta, **extra})
            return (closed, *ops.record_new(c, new, now))

        def abandoned(result: tuple[Transfer, Transfer, bool]) -> None:
            self._release_abandoned(Reservation(result[1], result[2]))

        closed, new, created = await self._write(op, abandoned)
        return closed, Reservation(new, created)

    async def _reserve(self, req: Request) -> Reservation:
        now = self.clock()
        if self._pg is not None:
            fast = await self._reserve_pg(req)
            if fast is not None:
                return fast

        def op(c: Db) -> tuple[Transfer, bool] | CreditsError:
            if not ops.has_due_holds(c, req.debit, now):
                return ops.record_new(c, req, now)  # a refusal raises: the whole op is undone
            account = ops.require_account(c, req.debit)
            for hold in ops.due_holds(c, now, account.id):  # stale holds must not block the user
                ops.record(c, expiry(hold), now)
            try:
                with c.savepoint():  # a refused reserve is undone; the releases above stay
                    return ops.record_new(c, req, now)
            except CreditsError as refused:
                return refused

        def abandoned(result: tuple[Transfer, bool] | CreditsError) -> None:
            if not isinstance(result, CreditsError):
                self._release_abandoned(Reservation(*result))

        result = await self._write(op, abandoned)
        if isinstance(result, CreditsError):
            raise result
        return Reservation(*result)

    def _release_abandoned(self, held: Reservation) -> None:
        """A hold was written for a caller that is gone: give it back now."""
        if not held.created:
            return
        hold_id = held.transfer.transfer_id
        logger.info("ledger: releasing %s, its caller was cancelled", hold_id)
        task = asyncio.ensure_future(self.release(hold_id, {"released": "caller cancelled"}))
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)
        task.add_done_callback(log_failure(f"releasing {hold_id}"))

    async def _reserve_pg(self, req: Request) -> Reservation | None:
        """`reserve` batched with its neighbours; None when the general path must run."""
        done = await self._reserves.submit(req)
        if done.outcome == "ok":
            return Reservation(Transfer(
                req.transfer_id, Kind.PENDING, req.code, req.amount, req.debit, req.credit,
                done.now_us, None, done.now_us + (req.timeout_s or 0) * 1_000_000, req.metadata,
                None, done.transfer_pk,
            ), True)  # fmt: skip
        if done.outcome == "insufficient":
            available = done.value or 0
            raise InsufficientCredits(
                f"{req.debit} has {available} units available, {req.amount} needed.",
                available=available,
                needed=req.amount,
            )
        found = await self._outcome(done, req)
        return None if found is None else Reservation(found, False)

    async def _outcome(self, done: postgres.Outcome, req: Request) -> Transfer | None:
        """What the hot path's other outcomes mean (None: run the general path)."""
        outcome = done.outcome
        if outcome == "exists":
            return await self.transfer(req.transfer_id)
        if outcome == "conflict":
            raise IdempotencyConflict(
                f"Transfer id {req.transfer_id!r} was already used for a different request."
            )
        if outcome == "unknown":
            raise UnknownHold(f"There is no hold {req.hold!r}.")
        if outcome.startswith("resolved:"):
            raise ops.resolved_error(req.hold, outcome.removeprefix("resolved:"))
        if outcome == "expired":
            raise HoldExpired(f"Hold {req.hold!r} expired; it can no longer be settled.")
        if outcome == "exceeds":
            raise SettleExceedsHold(
                f"Cannot settle {req.amount} units on hold {req.hold!r} of {done.value}."
            )
        return None

    async def settle(
        self, hold_id: str, amount: int, metadata: Mapping[str, Any] | None = None
    ) -> Transfer:
        """Charge a hold at `amount` (not above it); the rest goes back to the user."""
        return await self._resolve(
            hold_id, Kind.POST, check_amount(amount, allow_zero=True), metadata
        )

    async def release(self, hold_id: str, metadata: Mapping[str, Any] | None = None) -> Transfer:
        """Give a hold's credits back; nothing is charged."""
        return await self._resolve(hold_id, Kind.VOID, 0, metadata)

    async def _resolve(
        self, hold_id: str, kind: Kind, amount: int, metadata: Mapping[str, Any] | None
    ) -> Transfer:
        check_transfer_id(hold_id)
        extra = dict(metadata or {})
        canonical_metadata(extra)  # refuse bad metadata before queueing
        if self._pg is not None:  # a batch, then maybe the general path: all of it outlives us
            return await outlive_caller(self._resolve_now(hold_id, kind, amount, extra))
        return await self._resolve_now(hold_id, kind, amount, extra)  # one write, which does

    async def _resolve_now(
        self, hold_id: str, kind: Kind, amount: int, extra: dict[str, Any]
    ) -> Transfer:
        now = self.clock()
        if self._pg is not None:
            fast = await self._resolve_pg(hold_id, kind, amount, extra)
            if fast is not None:
                return fast

        def op(c: Db) -> Transfer:
            hold = ops.find_hold(c, hold_id)
            held = (hold.code, hold.debit.name, hold.credit.name) if hold else ("usage", "", "")
            meta = json.loads(hold.metadata) if hold else {}
            req = resolution(hold_id, kind, amount, held, meta, extra)
            return ops.resolve_hold(c, req, hold, now)[0]

        return await self._write(op)

    async def _resolve_pg(
        self, hold_id: str, kind: Kind, amount: int, extra: dict[str, Any]
    ) -> Transfer | None:
        """Settle or release, batched with its neighbours; None when the general path must run."""
        done = await self._resolutions.submit(postgres.Resolution(hold_id, kind, amount, extra))
        req = done.request
        if req is None:
            raise UnknownHold(f"There is no hold {hold_id!r}.")
        if done.outcome == "ok":
            return Transfer(
                req.transfer_id, kind, req.code, done.value or 0, req.debit, req.credit,
                done.now_us, hold_id, None, req.metadata, None, done.transfer_pk,
            )  # fmt: skip
        return await self._outcome(done, req)

    async def adjust(
        self, user: str, delta: int, reason: str, admin: str, transfer_id: str
    ) -> Transfer:
        """An administrator's correction, either sign; a user never goes below zero."""
        if isinstance(delta, bool) or not isinstance(delta, int) or delta == 0:
            raise InvalidRequest(
                f"An adjustment is a non-zero whole number of units, not {delta!r}."
            )
        if not reason.strip() or not admin.strip():
            raise InvalidRequest("An adjustment needs a reason and the admin who made it.")
        account = user_account(user)
        debit, credit = (
            (System.ADJUSTMENTS.value, account)
            if delta > 0
            else (account, System.ADJUSTMENTS.value)
        )
        req = Request(
            check_transfer_id(transfer_id), Kind.POSTED, "adjustment", check_amount(abs(delta)),
            debit, credit, metadata=canonical_metadata({"reason": reason, "admin": admin}),
        )  # fmt: skip
        now = self.clock()

        def op(c: Db) -> Transfer:
            ops.require_account(c, account)
            done, created = ops.record_new(c, req, now)
            if created and delta > 0:
                ops.cover_owed(c, account, done, now)
            return done

        return await self._write(op)

    async def release_all(self, user: str, reason: str) -> int:
        """Release every open hold of `user` (their account was disabled mid-work): the work
        still running is charged nothing. Returns how many."""
        name, now = user_account(user), self.clock()

        def op(c: Db) -> int:
            account = ops.find_account(c, name)
            held = ops.due_holds(c, 2**62, account.id) if account else []
            for hold in held:
                accounts = (hold.code, hold.debit, hold.credit)
                req = resolution(
                    hold.transfer_id, Kind.VOID, 0, accounts, hold.meta, {"released": reason}
                )
                ops.record(c, req, now)
            return len(held)

        return await self._write(op)

    async def expire_holds(self) -> int:
        """Release every hold past its timeout; returns how many."""
        now = self.clock()

        def op(c: Db) -> int:
            due = ops.due_holds(c, now)
            for hold in due:
                ops.record(c, expiry(hold), now)
            return len(due)

        return await self._write(op)

    async def sequence(self) -> None:
        """Append what is not yet in the log (PostgreSQL; SQLite appends at every commit)."""
        if self.read_only:
            return
        if self.sqlite:
            await self._write(lambda c: None)
            return
        assert self._engine is not None
        async with self._engine.begin() as conn:
            now = self.clock()
            cps = await conn.run_sync(lambda c: sequencer.sequence(SaDb(c), now, self.signer, True))
        self._after_commit(cps)

    async def checkpoint(self) -> log.Checkpoint:
        """A signed checkpoint of the whole log as it is now (written if the last one is older)."""
        await self.sequence()
        now = self.clock()

        cp, created = await self._write(
            lambda c: sequencer.checkpoint_now(c, now, self.signer, postgres=not self.sqlite)
        )
        if created:
            self._after_commit([cp])
        return cp

    # Reads --------------------------------------------------------------------------------------

    async def balance(self, user: str) -> Balance:
        name = user_account(user)
        account = await self._read(lambda c: ops.find_account(c, name))
        if account is None:
            return Balance(0, 0, 0)
        return Balance.of(account.counters, account.owed)

    async def owing(self) -> dict[str, int]:
        """Every user who owes credits, and how many units (a refund or dispute took back more
        than they had)."""
        rows = await self._read(
            lambda c: c.all("SELECT name, owed FROM ledger_accounts WHERE owed > 0 ORDER BY name")
        )
        return {str(name).removeprefix("user:"): int(owed) for name, owed in rows}

    async def transfer(self, transfer_id: str) -> Transfer | None:
        return await self._read(lambda c: ops.get_transfer(c, transfer_id))

    async def history(
        self,
        user: str,
        limit: int = 50,
        before: int | None = None,
        codes: list[str] | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
    ) -> list[Transfer]:
        """The user's transfers, newest first; page with `before`, the last page's final `pk`."""
        name = user_account(user)
        if not 1 <= limit <= 500:
            raise InvalidRequest("A page holds 1 to 500 transfers.")

        def op(c: Db) -> list[Transfer]:
            account = ops.find_account(c, name)
            if account is None:
                return []
            return ops.history(c, account.id, limit, before, codes, since_us, until_us)

        return await self._read(op)

    async def has_account(self, user: str) -> bool:
        name = user_account(user)
        return await self._read(lambda c: ops.find_account(c, name)) is not None

    async def charges(
        self, user: str, since_us: int | None = None, until_us: int | None = None
    ) -> list[Transfer]:
        """What the user paid for work (settled holds and direct charges), newest first; not
        administrators' corrections."""
        account = user_account(user)
        return [
            t
            for t in await self._all_history(user, since_us, until_us)
            if t.debit == account
            and t.kind in (Kind.POST, Kind.POSTED)
            and (t.amount or t.kind is Kind.POST)  # free work settles at zero, and counts
            and t.code != "adjustment"
        ]

    async def usage(
        self, user: str, by: str = "day", since_us: int | None = None, until_us: int | None = None
    ) -> dict[str, int]:
        """Units spent by the user, summed by day (UTC, YYYY-MM-DD) or by a metadata key."""
        totals: dict[str, int] = {}
        for t in await self.charges(user, since_us, until_us):
            key = day_of(t.ts_us) if by == "day" else str(t.meta.get(by, "unknown"))
            totals[key] = totals.get(key, 0) + t.amount
        return dict(sorted(totals.items()))

    async def _all_history(self, user: str, since: int | None, until: int | None) -> list[Transfer]:
        out: list[Transfer] = []
        before = None
        while True:
            page = await self.history(user, 500, before, None, since, until)
            out += page
            if len(page) < 500:
                return out
            before = page[-1].pk

"""The ledger's rules, with no I/O: accounts, transfers, holds, validation and the fold.

Model (after TigerBeetle). Amounts are integers in units, 1 credit = 1000 units; no floats anywhere.
Every account carries four counters: debits and credits, each pending and posted. A transfer moves an
amount from a debit account to a credit account:

    posted   moves credits now (a grant, an adjustment)
    pending  a hold: reserves credits until it is resolved, at most once, by one of
    post     settle the hold at an amount not above it (the rest returns)
    void     release the hold
    expire   the hold passed its timeout; released, and it can no longer be posted

Long work (a task's budget) renews its hold: one transaction posts (or voids) the old hold and
makes the next, so a budget extended or paid in parts is a chain of ordinary holds.

A user account's available credits, credits_posted - debits_posted - debits_pending, never go below
zero; system accounts (where credits come from and go to) may. Debits equal credits over the whole
ledger, always. Transfers are immutable and keyed by a caller-supplied id: the same id with the same
payload gives the first result again, with a different payload it is a conflict.

Refunds and lost disputes take credits back (`claw_back`): what the account has available is
posted back, and what it no longer has (already spent) is recorded as owed on the account, in the
claw-back's metadata and in an `owed` counter. Nothing may be held (spent) while anything is owed;
every credit that arrives afterwards (a grant, a purchase, an adjustment) covers what is owed first,
by a transfer of its own. So a user account still never goes below zero.

A failed operation (say, insufficient credits) records nothing, so its id stays free: retrying the same
id later, after a top-up, may succeed.

Its size is the whole model without I/O (accounts, transfers, validation, the fold, the request
builders): kept whole so that it can be read as the ledger's specification.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Any

from credits.errors import InvalidRequest

UNITS_PER_CREDIT = 1000
MAX_AMOUNT = 10**15  # a trillion credits: far above any real use, far below 2**63
MAX_METADATA_BYTES = 4096
TRANSFER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_.@/+=-]{0,199}")
CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")
CREDITS_TEXT = re.compile(r"[+-]?[0-9]{1,13}(\.[0-9]{1,3})?")


class AccountKind(StrEnum):
    USER = "user"
    SYSTEM = "system"


class System(StrEnum):
    """System accounts: every user credit comes from one of these, every spent credit goes to one."""

    PROMOTIONS = "system:promotions"
    STRIPE_CLEARING = "system:stripe_clearing"
    PAYPAL_CLEARING = "system:paypal_clearing"
    CRYPTO_CLEARING = "system:crypto_clearing"
    USAGE_REVENUE = "system:usage_revenue"
    ADJUSTMENTS = "system:adjustments"
    CLAWBACKS = "system:clawbacks"  # credits taken back by refunds and lost disputes


class Kind(StrEnum):
    POSTED = "posted"
    PENDING = "pending"
    POST = "post"
    VOID = "void"
    EXPIRE = "expire"


def user_account(user: str) -> str:
    """The ledger account name of a user (their login identifier)."""
    if not user or len(user) > 320 or user != user.strip():
        raise InvalidRequest(f"Not a valid user identifier: {user!r}.")
    return f"user:{user}"


@dataclass(frozen=True)
class Counters:
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def balance(self) -> int:
        """Posted credits minus posted debits."""
        return self.credits_posted - self.debits_posted

    @property
    def held(self) -> int:
        return self.debits_pending

    @property
    def available(self) -> int:
        return self.balance - self.debits_pending


@dataclass(frozen=True)
class Balance:
    """What a user has, in units: available to spend, held by running work, and posted."""

    available: int
    held: int
    posted: int
    owed: int = 0  # taken back by a refund or dispute beyond what was there; blocks spending

    @classmethod
    def of(cls, counters: Counters, owed: int = 0) -> Balance:
        return cls(counters.available, counters.held, counters.balance, owed)


@dataclass(frozen=True)
class Request:
    """A transfer as a caller asks for it; its fingerprint decides what a retried id means."""

    transfer_id: str
    kind: Kind
    code: str
    amount: int
    debit: str
    credit: str
    hold: str | None = None  # the hold's transfer id, for resolutions
    timeout_s: int | None = None  # for holds
    metadata: str = "{}"  # canonical JSON

    @cached_property
    def fingerprint(self) -> str:
        """What a retry must repeat to count as the same request (computed once)."""
        body = [
            self.kind.value,
            self.code,
            self.amount,
            self.debit,
            self.credit,
            self.hold,
            self.timeout_s,
            self.metadata,
        ]
        return hashlib.sha256(_COMPACT.encode(body).encode()).hexdigest()


@dataclass(frozen=True)
class Transfer:
    """A recorded transfer. `seq` is its position in the log (None until sequenced)."""

    transfer_id: str
    kind: Kind
    code: str
    amount: int
    debit: str
    credit: str
    ts_us: int
    hold: str | None = None
    expires_us: int | None = None
    metadata: str = "{}"
    # Where it sits (log position, row key for paging): not part of what the transfer is.
    seq: int | None = field(default=None, compare=False)
    pk: int | None = field(default=None, compare=False)

    @property
    def meta(self) -> dict[str, Any]:
        return dict(json.loads(self.metadata))


@dataclass(frozen=True)
class Reservation:
    """A reserve's outcome: the hold, and whether this call created it. Work runs only on a hold
    its own reserve created; False means the id had been used already (a retry or a replay)."""

    transfer: Transfer
    created: bool


def credits(units: int) -> Decimal:
    """Units as credits (display only: money paths stay in integer units)."""
    return Decimal(units) / UNITS_PER_CREDIT


def show_credits(units: int) -> str:
    """Credits for people: whole credits with thousands separators, else to the unit."""
    if units % UNITS_PER_CREDIT == 0:
        return f"{units // UNITS_PER_CREDIT:,}"
    return f"{credits(units):,.3f}"


def leaf_bytes(
    seq: int,
    transfer_id: str,
    kind: str,
    code: str,
    amount: int,
    debit: str,
    credit: str,
    hold: str | None,
    expires_us: int | None,
    ts_us: int,
    metadata: str,
) -> bytes:
    """Canonical JSON of a log entry. Ids and codes are validated to need no escaping."""
    return (
        f'{{"seq":{seq},"id":"{transfer_id}","kind":"{kind}","code":"{code}",'
        f'"amount":{amount},"debit":{json_str(debit)},"credit":{json_str(credit)},'
        f'"hold":{"null" if hold is None else _quote(hold)},'
        f'"expires":{"null" if expires_us is None else expires_us},"ts":{ts_us},'
        f'"meta":{metadata}}}'
    ).encode()


def _quote(value: str) -> str:
    return f'"{value}"'


@lru_cache(maxsize=65536)
def json_str(value: str) -> str:
    """A JSON string literal (account names repeat: cached)."""
    return json.dumps(value, ensure_ascii=False)


def parse_credits(text: str) -> int:
    """Units in `text`, a number of credits as people write it ("12", "-3", "0.5"), to the unit.

    Only plain decimals: no exponents, NaN, infinities or separators, and at most three decimals,
    so what was typed is exactly what is recorded."""
    cleaned = text.strip()
    if not CREDITS_TEXT.fullmatch(cleaned):
        raise InvalidRequest(
            f"{text!r} is not a number of credits: write digits with at most three decimals, "
            "like 25 or 0.5."
        )
    return int(Decimal(cleaned) * UNITS_PER_CREDIT)


# Validation -------------------------------------------------------------------------------------


def check_amount(amount: object, allow_zero: bool = False) -> int:
    """`amount` as a valid positive integer number of units, or `InvalidRequest`."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidRequest(f"Amounts are whole numbers of units, not {type(amount).__name__}.")
    if amount < 0 or (amount == 0 and not allow_zero):
        raise InvalidRequest(f"Amounts must be positive, not {amount}.")
    if amount > MAX_AMOUNT:
        raise InvalidRequest(f"Amount {amount} is above the largest allowed ({MAX_AMOUNT}).")
    return amount


def check_transfer_id(transfer_id: object) -> str:
    if not isinstance(transfer_id, str) or not TRANSFER_ID.fullmatch(transfer_id):
        raise InvalidRequest(
            "A transfer id is 1-200 characters of letters, digits and :_.@/+=- "
            f"starting with a letter or digit, not {transfer_id!r}."
        )
    return transfer_id


def check_code(code: object) -> str:
    if not isinstance(code, str) or not CODE.fullmatch(code):
        raise InvalidRequest(f"A code is a lower-case word like 'welcome', not {code!r}.")
    return code


def check_timeout(timeout_s: object) -> int:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or not 1 <= timeout_s <= 86400:
        raise InvalidRequest(f"A hold's timeout is 1 to 86400 seconds, not {timeout_s!r}.")
    return timeout_s


# The encoders `json.dumps` would make anew at every call, with the same options.
_COMPACT = json.JSONEncoder(separators=(",", ":"))
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_metadata(metadata: Mapping[str, Any] | None) -> str:
    """Metadata as canonical JSON (sorted keys, no spaces), or `InvalidRequest`."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise InvalidRequest("Metadata must be a JSON object.")
    try:
        text = _CANONICAL.encode(dict(metadata))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"Metadata must be plain JSON: {exc}.") from exc
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise InvalidRequest(f"Metadata is larger than {MAX_METADATA_BYTES} bytes.")
    return text


# The fold ---------------------------------------------------------------------------------------


class Books:
    """Balances rebuilt from transfers, in log order: what `verify` and the model tests compare.

    Counters are kept as plain lists while folding ([debits pending, debits posted, credits
    pending, credits posted]); `counters` gives them as `Counters`.
    """

    def __init__(self, open_start: bool = False) -> None:
        self._c: dict[str, list[int]] = {}
        self.holds: dict[str, tuple[str, str, int]] = {}  # open: id -> (debit, credit, amount)
        self.resolved: set[str] = set()
        # Books of a later stretch of the log (`open_start`) cannot know what came before it:
        # their counters are changes, the resolutions of holds placed earlier wait in `outside`,
        # and a user's lowest change of balance is kept per number of those before it (`lows`),
        # for `join` to judge once the start is known.
        self.outside: list[tuple[str, str, int, str, str, str]] | None = [] if open_start else None
        self.lows: dict[tuple[str, int], int] = {}

    @property
    def counters(self) -> dict[str, Counters]:
        return {name: Counters(*c) for name, c in self._c.items()}

    def add(
        self, tid: str, kind: str, amount: int, debit: str, credit: str, hold_id: str | None
    ) -> None:
        """Fold in one transfer (plain values: this is the verifier's hot loop).

        Raises ValueError when the transfer breaks a rule of the ledger.
        """
        if debit == credit:
            raise ValueError(f"{tid}: debit and credit are the same account")
        c = self._c
        d = c.get(debit) or c.setdefault(debit, [0, 0, 0, 0])
        k = c.get(credit) or c.setdefault(credit, [0, 0, 0, 0])
        if kind == "posted" or kind == "pending":
            i = 0 if kind == "pending" else 1
            d[i] += amount
            k[i + 2] += amount
            if i == 0:
                self.holds[tid] = (debit, credit, amount)
            available = d[3] - d[1] - d[0]
            if available < 0 and debit.startswith("user:"):
                if self.outside is None:
                    raise ValueError(f"{tid}: {debit} goes below zero")
                low = (debit, len(self.outside))
                if available < self.lows.get(low, 0):
                    self.lows[low] = available
            return
        hold = self.holds.pop(hold_id or "", None)
        if hold is None:
            again = "again " if hold_id in self.resolved else ""
            if self.outside is not None and hold_id and not again:
                self.outside.append((tid, kind, amount, debit, credit, hold_id))
                self.resolved.add(hold_id)
                return
            raise ValueError(f"{tid}: resolves {again}hold {hold_id!r} that is not open")
        self.resolved.add(hold_id or "")
        h_debit, h_credit, held = hold
        if debit != h_debit or credit != h_credit:
            raise ValueError(f"{tid}: accounts differ from hold {hold_id}")
        d[0] -= held
        k[2] -= held
        if kind == "post":
            if amount > held:
                raise ValueError(f"{tid}: posts {amount} > held {held}")
            d[1] += amount
            k[3] += amount
        elif amount != held:
            raise ValueError(f"{tid}: releases {amount}, hold was {held}")

    def join(self, later: Books) -> None:
        """Carry these books on over `later`, the `open_start` books of the transfers that follow.

        Raises ValueError when the two together break a rule that each alone keeps: a hold resolved
        in `later` that was not open here, or a user below zero once their start is counted.
        """
        c = self._c
        start = {name: v[3] - v[1] - v[0] for name, v in c.items() if name.startswith("user:")}
        lifted: list[tuple[str, int]] = []  # by each resolution from outside: (user, raised by)
        for tid, kind, amount, debit, credit, hold_id in later.outside or ():
            v = c.get(debit) or [0, 0, 0, 0]
            before = v[3] - v[1] - v[0]
            self.add(tid, kind, amount, debit, credit, hold_id)
            v = c[debit]
            lifted.append((debit, v[3] - v[1] - v[0] - before))
        for (user, n), low in later.lows.items():
            raised = sum(by for who, by in lifted[:n] if who == user)
            if start.get(user, 0) + raised + low < 0:
                raise ValueError(f"{user} goes below zero")
        for name, change in later._c.items():
            v = c.get(name) or c.setdefault(name, [0, 0, 0, 0])
            for i in range(4):
                v[i] += change[i]
        self.holds.update(later.holds)
        self.resolved |= later.resolved

    def conserved(self) -> bool:
        """Debits equal credits, pending and posted, across all accounts."""
        values = self._c.values()
        return sum(c[1] for c in values) == sum(c[3] for c in values) and sum(
            c[0] for c in values
        ) == sum(c[2] for c in values)


# One builder for each kind of request that more than one path makes -----------------------------


def hold_request(
    transfer_id: str,
    amount: int,
    accounts: tuple[str, str, str],
    timeout_s: int,
    metadata: Mapping[str, Any],
) -> Request:
    """A hold of `amount` under `transfer_id`, whose code, debit and credit accounts are
    `accounts`, until it is resolved or `timeout_s` passes."""
    code, debit, credit = accounts
    return Request(
        transfer_id, Kind.PENDING, code, amount, debit, credit, timeout_s=timeout_s,
        metadata=canonical_metadata(metadata),
    )  # fmt: skip


def resolution(
    hold_id: str,
    kind: Kind,
    amount: int,
    held: tuple[str, str, str],
    hold_meta: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> Request:
    """The settle (POST, `amount` charged) or release (VOID) of the hold `hold_id`, whose code,
    debit and credit accounts are `held`: id `<hold>/<post|void>`, the hold's metadata (model,
    kind...) with what resolving it added."""
    code, debit, credit = held
    return Request(
        f"{hold_id}/{kind.value}", kind, code, amount, debit, credit, hold=hold_id,
        metadata=canonical_metadata({**hold_meta, **extra}),
    )  # fmt: skip


def expiry(hold: Transfer) -> Request:
    """The release of `hold` once its timeout has passed."""
    return Request(
        f"{hold.transfer_id}/expire", Kind.EXPIRE, hold.code, hold.amount, hold.debit,
        hold.credit, hold=hold.transfer_id,
    )  # fmt: skip

"""Errors of the credits package.

CreditsError
├── InvalidRequest          malformed input: amount, id, code, metadata
├── UnknownAccount          no such account
├── InsufficientCredits     the balance cannot cover the amount
│   └── OwesCredits         nothing may be spent: a refund or dispute left credits owed
├── IdempotencyConflict     the id was used before with a different payload
├── UnknownHold             no hold with that id
├── HoldResolved            the hold was already settled, released or expired
├── HoldExpired             the hold timed out; its credits went back to the user
├── SettleExceedsHold       settling for more than was held
├── HoldNotCreated          a reserve found its id already used: the work must not run on it
├── WriterStopped           the ledger's writer stopped before this operation's outcome was known
├── UnknownTransfer         no transfer with that id
├── NotYetCheckpointed      the transfer is logged but no signed checkpoint covers it yet
└── IntegrityError          verification found the ledger altered or inconsistent
"""

from __future__ import annotations


class CreditsError(Exception):
    """Root of every error the credits package raises."""


class InvalidRequest(CreditsError):
    """The request is malformed (amount, id, code or metadata); nothing was written."""


class UnknownAccount(CreditsError):
    """There is no account with that name."""


class InsufficientCredits(CreditsError):
    """The account's available credits cannot cover the amount; nothing was written."""

    def __init__(self, message: str, available: int = 0, needed: int = 0) -> None:
        super().__init__(message)
        self.available = available
        self.needed = needed


class OwesCredits(InsufficientCredits):
    """The account owes credits (a refund or dispute took back more than it held): nothing can be
    spent until a top-up or grant has covered what is owed."""

    def __init__(self, message: str, owed: int, needed: int = 0) -> None:
        super().__init__(message, available=0, needed=needed)
        self.owed = owed


class IdempotencyConflict(CreditsError):
    """The transfer id was used before with a different payload."""


class UnknownTransfer(CreditsError):
    """There is no transfer with that id."""


class NotYetCheckpointed(CreditsError):
    """The transfer is in the log, but no signed checkpoint covers it yet (try again soon)."""


class UnknownHold(CreditsError):
    """There is no hold with that id."""


class HoldResolved(CreditsError):
    """The hold was already settled, released or expired."""


class HoldExpired(CreditsError):
    """The hold passed its timeout and was released; it can no longer be settled."""


class SettleExceedsHold(CreditsError):
    """A hold cannot be settled for more than it holds."""


class HoldNotCreated(CreditsError):
    """A reserve found a hold under its id already: this caller did not create it, so its work
    must not run on it (ids are minted per piece of work; a repeat means a replay)."""


class WriterStopped(CreditsError):
    """The ledger's writer stopped before this operation's outcome was known; it may have to be
    retried once the writer is back (the supervisor restarts it)."""


class IntegrityError(CreditsError):
    """Verification found the ledger altered or inconsistent."""

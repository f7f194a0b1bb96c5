"""The ledger as this deployment keeps it: where (its own SQLite file under the data directory, or
PostgreSQL), its signing key (in the data directory, or LEDGER_SIGNING_KEY), how often it signs.
The app and every command line open it the same way; the credits package itself reads no setting."""

from __future__ import annotations

from credits import log
from credits.store import Ledger
from settings import Settings


def ledger_from_settings(settings: Settings) -> Ledger:
    """The ledger `settings` describe (not started)."""
    seed = settings.ledger_signing_key

    def key() -> log.Ed25519PrivateKey:  # read (or made, at first start) when the ledger starts
        return log.load_or_create_key(
            settings.data_dir / "ledger-signing.key", seed.get_secret_value() if seed else None
        )

    return Ledger(
        settings.ledger_url,
        settings.data_dir,
        key,
        checkpoint_every=settings.checkpoint_every_entries,
        checkpoint_every_s=settings.checkpoint_every_s,
        synchronous=settings.ledger_sqlite_synchronous,
    )

"""The ledger as this deployment configures it: the app and the CLI open it the same way."""

from __future__ import annotations

from credits import log
from credits.store import Ledger
from settings import Settings


def ledger_from_settings(settings: Settings) -> Ledger:
    """The ledger `settings` describe (not started)."""
    seed = settings.ledger_signing_key
    key = log.load_or_create_key(
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

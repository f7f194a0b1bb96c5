"""Alembic environment of the ledger (own version table, so it can share a database)."""

from storage.alembic_env import run

run()

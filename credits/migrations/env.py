"""Alembic environment of the ledger (own version table, so it can share a database)."""

from credits.migrate import run_environment

run_environment()

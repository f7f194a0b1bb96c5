"""Alembic environment of the app's tables (the runner is credits/migrate.py's)."""

from credits.migrate import run_environment

run_environment()

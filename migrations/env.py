"""Alembic environment of the app's tables (see storage/alembic_env.py)."""

from storage.alembic_env import run

run()

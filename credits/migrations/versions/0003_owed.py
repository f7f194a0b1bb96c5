"""Owed credits: what a refund or lost dispute took back beyond what the account still had.

`owed` on each account (never negative); nothing may be held while it is above zero, and every
credit that arrives covers it first (credits/ops.py). On PostgreSQL the reserve function learns the
same rule (`0003_owed_functions.sql`).

Revision ID: ledger_0003
Revises: ledger_0002
Create Date: 2026-11-30
"""

from pathlib import Path

from alembic import op

revision = "ledger_0003"
down_revision = "ledger_0002"
branch_labels = None
depends_on = None

FUNCTIONS = Path(__file__).with_name("0003_owed_functions.sql")


def upgrade() -> None:
    op.execute(
        "ALTER TABLE ledger_accounts ADD COLUMN owed BIGINT NOT NULL DEFAULT 0 "
        "CONSTRAINT ck_account_owed_nonnegative CHECK (owed >= 0)"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTIONS.read_text())


def downgrade() -> None:
    op.execute("ALTER TABLE ledger_accounts DROP COLUMN owed")

"""A run counts each action's charge in what it spent once: `spent_through` is the last action
whose charge `spent` holds (the ledger settles a charge and the run's row counts it in two
transactions; an attempt taking over from a process killed between them counts it again).
Runs from before count from 0: one caught mid-crash by the upgrade may count its last action
twice (its budget pauses it early, never late).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_runs") as table:
        table.add_column(sa.Column("spent_through", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("task_runs") as table:
        table.drop_column("spent_through")

"""Long tasks' runs, what the person sees and what the worker needs: the chat message that shows
the run, the model it thinks with, its files, its progress (plan, steps, tool calls, answer), what
a run paused for credits needs, when a run that failed for a moment may be tried again, and how
many times in a row it did.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task_runs") as table:
        table.add_column(sa.Column("message_id", sa.Text))
        table.add_column(sa.Column("model", sa.Text))
        table.add_column(sa.Column("files", sa.Text, nullable=False, server_default="[]"))
        table.add_column(sa.Column("progress", sa.Text, nullable=False, server_default="{}"))
        table.add_column(sa.Column("needs", sa.BigInteger, nullable=False, server_default="0"))
        table.add_column(sa.Column("not_before", sa.DateTime(timezone=True)))
        table.add_column(sa.Column("failures", sa.Integer, nullable=False, server_default="0"))
        table.create_check_constraint("ck_task_run_needs", "needs >= 0 AND failures >= 0")


def downgrade() -> None:
    with op.batch_alter_table("task_runs") as table:
        table.drop_constraint("ck_task_run_needs", type_="check")
        for column in (
            "failures",
            "not_before",
            "needs",
            "progress",
            "files",
            "model",
            "message_id",
        ):
            table.drop_column(column)

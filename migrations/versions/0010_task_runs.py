"""Long tasks' runs: status, attempt, the worker holding the lease and until when, the budget and
what was spent, why a run is paused, how it ended.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("thread_id", sa.Text),
        sa.Column("goal", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker", sa.Text),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("budget", sa.BigInteger, nullable=False),
        sa.Column("spent", sa.BigInteger, nullable=False),
        sa.Column("paused_reason", sa.Text),
        sa.Column("outcome", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'paused', 'cancelled', 'succeeded', 'failed')",
            name="ck_task_run_status",
        ),
        sa.CheckConstraint("budget > 0 AND spent >= 0", name="ck_task_run_money"),
        sa.CheckConstraint("attempt >= 0", name="ck_task_run_attempt"),
    )
    op.create_index("ix_task_runs_claim", "task_runs", ["status", "created_at"])
    op.create_index("ix_task_runs_owner", "task_runs", ["owner", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_task_runs_owner", "task_runs")
    op.drop_index("ix_task_runs_claim", "task_runs")
    op.drop_table("task_runs")

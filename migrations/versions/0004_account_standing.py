"""Each account's standing, set by the operator: disabled (nobody signs in as it, its sessions end)
and the moment before which its sessions no longer count (signed out everywhere, or a password
changed).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_standing",
        sa.Column("account", sa.Text, primary_key=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("sessions_after", sa.Float, nullable=False),  # seconds since the epoch
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("account_standing")

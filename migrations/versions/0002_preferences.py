"""Per-person preferences (the chosen model), kept across chats and devices.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "preferences",
        sa.Column("identifier", sa.Text, primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(model) BETWEEN 1 AND 100", name="ck_preferences_model"),
    )


def downgrade() -> None:
    op.drop_table("preferences")

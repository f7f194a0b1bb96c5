"""Images: the generated images (their owner, the work that made them, the digests of their files),
quotes for costly work waiting for the person's word, and each person's image choices.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("thread_id", sa.Text),
        sa.Column("work", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("thumb_sha256", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_images_owner", "images", ["owner", "created_at"])
    op.create_table(
        "work_quotes",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("thread_id", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("units >= 0", name="ck_work_quote_units"),
        sa.CheckConstraint(
            "state IN ('open', 'confirmed', 'cancelled', 'expired')", name="ck_work_quote_state"
        ),
    )
    op.create_index("ix_work_quotes_thread", "work_quotes", ["owner", "thread_id", "state"])
    op.create_table(
        "image_choices",
        sa.Column("identifier", sa.Text, primary_key=True),
        sa.Column("model", sa.Text),
        sa.Column("size", sa.Text),
        sa.Column("steps", sa.Integer),
        sa.Column("count", sa.Integer),
        sa.Column("seed", sa.BigInteger),
        sa.Column("ask_above", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("image_choices")
    op.drop_index("ix_work_quotes_thread", "work_quotes")
    op.drop_table("work_quotes")
    op.drop_index("ix_images_owner", "images")
    op.drop_table("images")

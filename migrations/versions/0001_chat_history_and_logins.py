"""Chat history (the tables Chainlit's SQLAlchemy data layer uses) and password logins.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Chainlit's documented PostgreSQL types, with SQLite equivalents (JSON and arrays as JSON text).
ID = sa.Text().with_variant(postgresql.UUID(as_uuid=False), "postgresql")
JSON = sa.Text().with_variant(postgresql.JSONB(), "postgresql")
TAGS = sa.Text().with_variant(postgresql.ARRAY(sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", ID, primary_key=True),
        sa.Column("identifier", sa.Text, nullable=False, unique=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("createdAt", sa.Text),
    )
    op.create_table(
        "threads",
        sa.Column("id", ID, primary_key=True),
        sa.Column("createdAt", sa.Text),
        sa.Column("name", sa.Text),
        sa.Column("userId", ID, sa.ForeignKey("users.id", ondelete="CASCADE")),
        sa.Column("userIdentifier", sa.Text),
        sa.Column("tags", TAGS),
        sa.Column("metadata", JSON),
    )
    op.create_index("ix_threads_user", "threads", ["userId"])
    op.create_table(
        "steps",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("threadId", ID, sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("parentId", ID),
        sa.Column("command", sa.Text),
        sa.Column("modes", JSON),
        sa.Column("streaming", sa.Boolean, nullable=False),
        sa.Column("waitForAnswer", sa.Boolean),
        sa.Column("isError", sa.Boolean),
        sa.Column("metadata", JSON),
        sa.Column("tags", TAGS),
        sa.Column("input", sa.Text),
        sa.Column("output", sa.Text),
        sa.Column("createdAt", sa.Text),
        sa.Column("start", sa.Text),
        sa.Column("end", sa.Text),
        sa.Column("generation", JSON),
        sa.Column("showInput", sa.Text),
        sa.Column("defaultOpen", sa.Boolean),
        sa.Column("autoCollapse", sa.Boolean),
        sa.Column("language", sa.Text),
        sa.Column("icon", sa.Text),
    )
    op.create_index("ix_steps_thread", "steps", ["threadId", "createdAt"])
    op.create_table(
        "elements",
        sa.Column("id", ID, primary_key=True),
        sa.Column("threadId", ID, sa.ForeignKey("threads.id", ondelete="CASCADE")),
        sa.Column("type", sa.Text),
        sa.Column("url", sa.Text),
        sa.Column("chainlitKey", sa.Text),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("display", sa.Text),
        sa.Column("objectKey", sa.Text),
        sa.Column("size", sa.Text),
        sa.Column("page", sa.Integer),
        sa.Column("language", sa.Text),
        sa.Column("forId", ID),
        sa.Column("mime", sa.Text),
        sa.Column("props", JSON),
        sa.Column("autoPlay", sa.Boolean),
        sa.Column("playerConfig", JSON),
    )
    op.create_table(
        "feedbacks",
        sa.Column("id", ID, primary_key=True),
        sa.Column("forId", ID, nullable=False),
        sa.Column("threadId", ID, sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("value", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text),
    )
    op.create_table(
        "logins",
        sa.Column("identifier", sa.Text, primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'user')", name="ck_logins_role"),
    )


def downgrade() -> None:
    for table in ("logins", "feedbacks", "elements", "steps", "threads", "users"):
        op.drop_table(table)

"""Identities: a person signed in through a provider is known by the provider and its stable
subject (GitHub's numeric id, an OpenID Connect issuer's `sub`), never by a display name or an
unverified email; `account` is who they are here.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identities",
        sa.Column("provider", sa.Text, primary_key=True),
        sa.Column("subject", sa.Text, primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("email_verified", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("length(subject) BETWEEN 1 AND 255", name="ck_identities_subject"),
    )
    op.create_index("ix_identities_account", "identities", ["account"])


def downgrade() -> None:
    op.drop_table("identities")

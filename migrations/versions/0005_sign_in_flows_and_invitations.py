"""Sign-in flows in progress (state, nonce, PKCE verifier: any replica may take the callback, once)
and invitations to sign up. Google identities are keyed by Google's issuer, as every OpenID
Connect provider's now are (a subject is unique only within its issuer).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sign_in_flows",
        sa.Column("state", sa.Text, primary_key=True),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("nonce", sa.Text, nullable=False),
        sa.Column("verifier", sa.Text, nullable=False),
        sa.Column("link_account", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),  # seconds since the epoch
    )
    op.create_table(
        "invitations",
        sa.Column("email", sa.Text, primary_key=True),
        sa.Column("invited_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_by", sa.Text),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        "UPDATE identities SET provider = 'https://accounts.google.com' WHERE provider = 'google'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE identities SET provider = 'google' WHERE provider = 'https://accounts.google.com'"
    )
    op.drop_table("invitations")
    op.drop_table("sign_in_flows")

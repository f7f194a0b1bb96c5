"""Orders: one row per checkout of a credit pack (payments/orders.py). The database holds the
rules it can: known providers and states, positive amounts, one order per provider checkout, one
order per grant.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATES = (
    "created", "pending", "paid", "expired", "failed", "partially_refunded", "refunded",
    "disputed", "dispute_won", "dispute_lost",
)  # fmt: skip


def upgrade() -> None:
    states = ", ".join(f"'{s}'" for s in STATES)
    op.create_table(
        "orders",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("pack", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("provider_ref", sa.Text),
        sa.Column("transfer_id", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("provider IN ('stripe', 'paypal', 'crypto')", name="ck_order_provider"),
        sa.CheckConstraint(f"state IN ({states})", name="ck_order_state"),
        sa.CheckConstraint("amount_minor > 0 AND units > 0", name="ck_order_positive"),
        sa.UniqueConstraint("provider", "provider_ref", name="uq_order_checkout"),
        sa.UniqueConstraint("transfer_id", name="uq_order_grant"),
    )
    op.create_index("ix_orders_account", "orders", ["account", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_orders_account", table_name="orders")
    op.drop_table("orders")

"""Payments: what an order learnt from its provider (its payment, receipt, refunds and disputes,
a mismatch; a version for optimistic updates), and the providers' verified notifications: one row
per event id, stored when it arrives and marked applied in the same transaction as the order's
change (payments/inbox.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("provider_status", sa.Text))
        batch.add_column(sa.Column("payment_ref", sa.Text))
        batch.add_column(sa.Column("receipt_url", sa.Text))
        batch.add_column(
            sa.Column("refunded_minor", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("dispute", sa.Text))
        batch.add_column(sa.Column("problem", sa.Text))
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
        batch.create_check_constraint("ck_order_refunded", "refunded_minor >= 0")
        batch.create_check_constraint(
            "ck_order_dispute", "dispute IS NULL OR dispute IN ('open', 'won', 'lost')"
        )
    op.create_index("ix_orders_updated", "orders", ["updated_at"])
    op.create_table(
        "payment_events",
        sa.Column("provider", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),  # as signed: its signature was checked
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True)),
        sa.Column("order_id", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_try_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_payment_events_due", "payment_events", ["applied_at", "next_try_at"])


def downgrade() -> None:
    op.drop_index("ix_payment_events_due", table_name="payment_events")
    op.drop_table("payment_events")
    op.drop_index("ix_orders_updated", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        for column in (
            "provider_status", "payment_ref", "receipt_url", "refunded_minor", "dispute", "problem",
            "version",
        ):  # fmt: skip
            batch.drop_column(column)

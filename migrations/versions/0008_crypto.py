"""Crypto top-ups: wallets bound by Sign-In with Ethereum (and the nonces of their messages),
quotes, the payments found on the chain (one row per chain, transaction and log index, the id of
their grant), each chain's watcher cursor and lease; and the units an order credited where they
differ from its pack's (a crypto payment buys in proportion to what was paid).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATES = "'confirming', 'credited', 'unattributed', 'unmatched', 'underpaid', 'dropped', 'vanished'"


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("credited", sa.BigInteger))
        batch.create_check_constraint("ck_order_credited", "credited IS NULL OR credited > 0")
    op.create_table(
        "wallets",
        sa.Column("address", sa.Text, primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "address = lower(address) AND length(address) = 42", "ck_wallet_address"
        ),
    )
    op.create_index("ix_wallets_account", "wallets", ["account"])
    op.create_table(
        "wallet_nonces",
        sa.Column("nonce", sa.Text, primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "crypto_quotes",
        sa.Column("order_id", sa.Text, sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("chain_id", sa.BigInteger, nullable=False),
        sa.Column("asset", sa.Text, nullable=False),
        sa.Column("token", sa.Text),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("amount", sa.Text, nullable=False),
        sa.Column("decimals", sa.Integer, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("rate", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("asset IN ('native', 'token')", "ck_quote_asset"),
    )
    op.create_index("ix_crypto_quotes_open", "crypto_quotes", ["account", "asset", "expires_at"])
    op.create_table(
        "crypto_payments",
        sa.Column("chain_id", sa.BigInteger, primary_key=True),
        sa.Column("tx_hash", sa.Text, primary_key=True),
        sa.Column("log_index", sa.Integer, primary_key=True),
        sa.Column("token", sa.Text),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("amount", sa.Text, nullable=False),
        sa.Column("block_number", sa.BigInteger),
        sa.Column("block_hash", sa.Text),
        sa.Column("block_time", sa.BigInteger, nullable=False),
        sa.Column("account", sa.Text),
        sa.Column("order_id", sa.Text, sa.ForeignKey("orders.id"), unique=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("confirmations", sa.Integer, nullable=False, server_default="0"),
        sa.Column("credited", sa.BigInteger),
        sa.Column("problem", sa.Text),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"state IN ({STATES})", "ck_crypto_payment_state"),
        sa.CheckConstraint("log_index >= -1", "ck_crypto_payment_log_index"),
        sa.CheckConstraint(
            "state <> 'credited' OR (credited > 0 AND account IS NOT NULL)",
            "ck_crypto_payment_credited",
        ),
    )
    op.create_index("ix_crypto_payments_state", "crypto_payments", ["state", "block_number"])
    op.create_table(
        "chain_cursors",
        sa.Column("chain_id", sa.BigInteger, primary_key=True),
        sa.Column("block_number", sa.BigInteger),
        sa.Column("block_hash", sa.Text),
        sa.Column("owner", sa.Text),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chain_cursors")
    op.drop_index("ix_crypto_payments_state", table_name="crypto_payments")
    op.drop_table("crypto_payments")
    op.drop_index("ix_crypto_quotes_open", table_name="crypto_quotes")
    op.drop_table("crypto_quotes")
    op.drop_table("wallet_nonces")
    op.drop_index("ix_wallets_account", table_name="wallets")
    op.drop_table("wallets")
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint("ck_order_credited", type_="check")
        batch.drop_column("credited")

"""The ledger: accounts, transfers, the Merkle log, checkpoints, append-only triggers.

Revision ID: ledger_0001
Revises:
Create Date: 2026-11-21
"""

from alembic import op

from credits import schema

revision = "ledger_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    schema.metadata.create_all(bind)
    for statement in schema.immutability_ddl(bind.dialect.name):
        op.execute(statement)
    if bind.dialect.name == "postgresql":  # one round trip for the hot operations
        for function in schema.POSTGRES_FUNCTIONS.read_text().split("-- next\n"):
            bind.exec_driver_sql(function)
    op.execute(
        "INSERT INTO ledger_log_head (id, size, frontier, checkpoint_size, checkpoint_us) "
        "VALUES (1, 0, '[]', 0, 0)"
    )


def downgrade() -> None:
    schema.metadata.drop_all(op.get_bind())

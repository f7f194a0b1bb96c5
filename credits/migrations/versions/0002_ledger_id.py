"""The ledger's own id, named in the origin of every checkpoint signed from now on, so that a
checkpoint (and each line of the file kept outside the database) says which ledger it belongs to.

A ledger that already had checkpoints signed them under the bare origin: `legacy_origin` records
that those are its own. A ledger created from now on has none, so bare-origin lines in a checkpoint
file are another (older) ledger's.

Revision ID: ledger_0002
Revises: ledger_0001
Create Date: 2026-11-30
"""

import secrets

from alembic import op

revision = "ledger_0002"
down_revision = "ledger_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE ledger_meta (id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1), "
        "ledger_id TEXT NOT NULL, legacy_origin BOOLEAN NOT NULL)"
    )
    op.execute(
        "INSERT INTO ledger_meta (id, ledger_id, legacy_origin) SELECT 1, "
        f"'{secrets.token_hex(8)}', EXISTS (SELECT 1 FROM ledger_checkpoints)"
    )
    for statement in _append_only(op.get_bind().dialect.name):
        op.execute(statement)


def _append_only(dialect: str) -> list[str]:
    """The id never changes: a checkpoint names it under its signature."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER ledger_meta_no_{verb.lower()} BEFORE {verb} ON ledger_meta "
            "BEGIN SELECT RAISE(ABORT, 'ledger_meta is append-only'); END"
            for verb in ("UPDATE", "DELETE")
        ]
    return [
        "CREATE TRIGGER ledger_meta_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_meta "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()"
    ]


def downgrade() -> None:
    op.execute("DROP TABLE ledger_meta")

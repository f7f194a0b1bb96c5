"""The ledger: accounts, transfers, the Merkle log, checkpoints, append-only triggers.

Frozen: this is the schema as it was released, written out in full (tables, indexes, triggers, and
the PL/pgSQL functions in `0001_ledger_functions.sql` beside it). It no longer follows
`credits/schema.py`: every change to the ledger's tables or functions is a new revision, so fresh
installs and upgraded ones end up with the same database. tests/credits/test_migrations.py checks
that the migrated schema and `credits/schema.py` agree.

Revision ID: ledger_0001
Revises:
Create Date: 2026-11-21
"""

from pathlib import Path

from alembic import op

revision = "ledger_0001"
down_revision = None
branch_labels = None
depends_on = None

TYPES = {
    "sqlite": {"serial": "INTEGER", "ref": "INTEGER", "bytes": "BLOB"},
    "postgresql": {"serial": "BIGSERIAL", "ref": "BIGINT", "bytes": "BYTEA"},
}

TABLES = """
CREATE TABLE ledger_accounts (
    id {serial} NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    debits_pending BIGINT DEFAULT '0' NOT NULL,
    debits_posted BIGINT DEFAULT '0' NOT NULL,
    credits_pending BIGINT DEFAULT '0' NOT NULL,
    credits_posted BIGINT DEFAULT '0' NOT NULL,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT ck_account_kind CHECK (kind IN ('user', 'system')),
    CONSTRAINT ck_account_counters_nonnegative CHECK (debits_pending >= 0 AND debits_posted >= 0
        AND credits_pending >= 0 AND credits_posted >= 0),
    CONSTRAINT ck_user_never_overdrawn CHECK (kind <> 'user'
        OR credits_posted - debits_posted - debits_pending >= 0),
    UNIQUE (name)
);
CREATE TABLE ledger_checkpoints (
    size BIGINT NOT NULL,
    root {bytes} NOT NULL,
    timestamp_us BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature {bytes} NOT NULL,
    origin TEXT NOT NULL,
    PRIMARY KEY (size)
);
CREATE TABLE ledger_log_head (
    id INTEGER NOT NULL,
    size BIGINT NOT NULL,
    frontier TEXT NOT NULL,
    checkpoint_size BIGINT NOT NULL,
    checkpoint_us BIGINT NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT ck_single_head CHECK (id = 1)
);
CREATE TABLE ledger_transfers (
    pk {serial} NOT NULL,
    transfer_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    code TEXT NOT NULL,
    amount BIGINT NOT NULL,
    debit_id {ref} NOT NULL,
    credit_id {ref} NOT NULL,
    hold_pk {ref},
    expires_us BIGINT,
    ts_us BIGINT NOT NULL,
    metadata TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (pk),
    CONSTRAINT ck_transfer_kind CHECK (kind IN ('posted', 'pending', 'post', 'void', 'expire')),
    CONSTRAINT ck_transfer_amount CHECK (amount >= 0 AND amount <= 1000000000000000),
    CONSTRAINT ck_transfer_two_accounts CHECK (debit_id <> credit_id),
    CONSTRAINT ck_resolution_names_hold CHECK ((kind IN ('post', 'void', 'expire')) = (hold_pk IS NOT NULL)),
    CONSTRAINT ck_hold_expires CHECK ((kind = 'pending') = (expires_us IS NOT NULL)),
    UNIQUE (transfer_id),
    FOREIGN KEY(debit_id) REFERENCES ledger_accounts (id),
    FOREIGN KEY(credit_id) REFERENCES ledger_accounts (id),
    FOREIGN KEY(hold_pk) REFERENCES ledger_transfers (pk)
);
CREATE INDEX ix_transfers_credit ON ledger_transfers (credit_id, pk);
CREATE INDEX ix_transfers_debit ON ledger_transfers (debit_id, pk);
CREATE UNIQUE INDEX ux_one_resolution_per_hold ON ledger_transfers (hold_pk);
CREATE TABLE ledger_log (
    seq {ref} NOT NULL,
    transfer_pk {ref} NOT NULL,
    leaf_hash {bytes} NOT NULL,
    PRIMARY KEY (seq),
    CONSTRAINT ck_log_seq CHECK (seq >= 1),
    UNIQUE (transfer_pk),
    FOREIGN KEY(transfer_pk) REFERENCES ledger_transfers (pk)
);
CREATE TABLE ledger_log_queue (
    transfer_pk {ref} NOT NULL,
    PRIMARY KEY (transfer_pk),
    FOREIGN KEY(transfer_pk) REFERENCES ledger_transfers (pk)
);
CREATE TABLE ledger_open_holds (
    hold_pk {ref} NOT NULL,
    account_id {ref} NOT NULL,
    expires_us BIGINT NOT NULL,
    PRIMARY KEY (hold_pk),
    FOREIGN KEY(hold_pk) REFERENCES ledger_transfers (pk)
);
CREATE INDEX ix_open_holds_account ON ledger_open_holds (account_id, expires_us);
CREATE INDEX ix_open_holds_expiry ON ledger_open_holds (expires_us);
"""

APPEND_ONLY = ("ledger_transfers", "ledger_log", "ledger_checkpoints")
FUNCTIONS = Path(__file__).with_name("0001_ledger_functions.sql")


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    for statement in TABLES.format(**TYPES[dialect]).split(";"):
        if statement.strip():
            op.execute(statement)
    for statement in _append_only(dialect):
        op.execute(statement)
    if dialect == "postgresql":  # one round trip for the hot operations
        for function in FUNCTIONS.read_text().split("-- next\n"):
            bind.exec_driver_sql(function)
    op.execute(
        "INSERT INTO ledger_log_head (id, size, frontier, checkpoint_size, checkpoint_us) "
        "VALUES (1, 0, '[]', 0, 0)"
    )


def _append_only(dialect: str) -> list[str]:
    """Triggers refusing UPDATE and DELETE on the append-only tables."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            for table in APPEND_ONLY
            for verb in ("UPDATE", "DELETE")
        ]
    return [
        "CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
        *(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()"
            for table in APPEND_ONLY
        ),
    ]


def downgrade() -> None:
    for table in (
        "ledger_open_holds", "ledger_log_queue", "ledger_log", "ledger_transfers",
        "ledger_log_head", "ledger_checkpoints", "ledger_accounts",
    ):  # fmt: skip
        op.execute(f"DROP TABLE {table}")

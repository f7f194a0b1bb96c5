"""The ledger's tables, as a model to read and to compare against: the migrations under
`credits/migrations/versions` create them (explicit DDL, frozen once released), and a test checks that
the migrated database and this file agree. The database enforces what it can: no overdrawn user, one
resolution per hold, unique transfer ids, and (by triggers, in the migrations) no UPDATE or DELETE of
transfers, log, checkpoints or the ledger's id.

User-account counters are kept by each operation (they guard against overdrawing). System-account
counters are kept by the log sequencer as it appends entries, so that no busy system row is locked by
every operation. Both are rebuilt from the transfers by `verify`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)

from credits.ledger import MAX_AMOUNT

metadata = MetaData()
PK = BigInteger().with_variant(Integer(), "sqlite")  # SQLite's INTEGER PRIMARY KEY is its rowid

accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", PK, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("debits_pending", BigInteger, nullable=False, server_default="0"),
    Column("debits_posted", BigInteger, nullable=False, server_default="0"),
    Column("credits_pending", BigInteger, nullable=False, server_default="0"),
    Column("credits_posted", BigInteger, nullable=False, server_default="0"),
    Column("created_us", BigInteger, nullable=False),
    Column("owed", BigInteger, nullable=False, server_default="0"),  # added by ledger_0003
    CheckConstraint("kind IN ('user', 'system')", name="ck_account_kind"),
    CheckConstraint("owed >= 0", name="ck_account_owed_nonnegative"),
    CheckConstraint(
        "debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 "
        "AND credits_posted >= 0",
        name="ck_account_counters_nonnegative",
    ),
    CheckConstraint(
        "kind <> 'user' OR credits_posted - debits_posted - debits_pending >= 0",
        name="ck_user_never_overdrawn",
    ),
)

transfers = Table(
    "ledger_transfers",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("transfer_id", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("debit_id", PK, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("credit_id", PK, ForeignKey("ledger_accounts.id"), nullable=False),
    Column("hold_pk", PK, ForeignKey("ledger_transfers.pk"), nullable=True),
    Column("expires_us", BigInteger, nullable=True),
    Column("ts_us", BigInteger, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    CheckConstraint(
        "kind IN ('posted', 'pending', 'post', 'void', 'expire')", name="ck_transfer_kind"
    ),
    CheckConstraint(f"amount >= 0 AND amount <= {MAX_AMOUNT}", name="ck_transfer_amount"),
    CheckConstraint("debit_id <> credit_id", name="ck_transfer_two_accounts"),
    CheckConstraint(
        "(kind IN ('post', 'void', 'expire')) = (hold_pk IS NOT NULL)",
        name="ck_resolution_names_hold",
    ),
    CheckConstraint("(kind = 'pending') = (expires_us IS NOT NULL)", name="ck_hold_expires"),
)
Index("ux_one_resolution_per_hold", transfers.c.hold_pk, unique=True)
Index("ix_transfers_debit", transfers.c.debit_id, transfers.c.pk)
Index("ix_transfers_credit", transfers.c.credit_id, transfers.c.pk)

# Two derived tables, indexes in effect, so no operation scans history: the holds still open (added
# by a reserve, removed by its resolution) and the transfers not yet in the log (added with each
# transfer, removed by the sequencer). `verify` does not trust them; it rebuilds from the transfers.
open_holds = Table(
    "ledger_open_holds",
    metadata,
    Column("hold_pk", PK, ForeignKey("ledger_transfers.pk"), primary_key=True),
    Column("account_id", PK, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
)
Index("ix_open_holds_account", open_holds.c.account_id, open_holds.c.expires_us)
Index("ix_open_holds_expiry", open_holds.c.expires_us)

log_queue = Table(
    "ledger_log_queue",
    metadata,
    Column("transfer_pk", PK, ForeignKey("ledger_transfers.pk"), primary_key=True),
)

log = Table(
    "ledger_log",
    metadata,
    Column("seq", PK, primary_key=True, autoincrement=False),  # the rowid on SQLite
    Column("transfer_pk", PK, ForeignKey("ledger_transfers.pk"), nullable=False, unique=True),
    Column("leaf_hash", LargeBinary, nullable=False),
    CheckConstraint("seq >= 1", name="ck_log_seq"),
)

log_head = Table(
    "ledger_log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("frontier", Text, nullable=False),  # JSON list of hex subtree roots, largest first
    Column("checkpoint_size", BigInteger, nullable=False),
    Column("checkpoint_us", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="ck_single_head"),
)

meta = Table(  # added by ledger_0002
    "ledger_meta",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("ledger_id", Text, nullable=False),
    Column("legacy_origin", Boolean, nullable=False),  # signed under the bare origin before ids
    CheckConstraint("id = 1"),
)

checkpoints = Table(
    "ledger_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary, nullable=False),
    Column("timestamp_us", BigInteger, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("origin", Text, nullable=False),
)

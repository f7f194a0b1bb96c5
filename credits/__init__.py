"""The credit ledger: double-entry, holds that expire, idempotent transfers, a tamper-evident log.

Knows nothing about chat, Chainlit or payment providers. `ledger` is the pure core, `store` the
database adapter, `log` the Merkle log and signed checkpoints, `audit` the verifier.
"""

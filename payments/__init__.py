"""Buying credits: orders, their fulfilment through the ledger, and (next) the providers.

An order is one row per checkout, moved through its states only by conditional updates
(`orders.py`). Paying grants the order's credits under the order's own transfer id
(`<provider>:<checkout ref>`), so the webhook, the return page and reconciliation may all fulfil
it, at once and any number of times: the ledger grants once and the order moves to paid once.
"""

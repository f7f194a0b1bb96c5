"""Buying credits: the packs on sale, the payment providers (Stripe, PayPal) behind one interface,
orders, and their fulfilment through the ledger.

- `packs.py`: the catalogue (packs.toml). `provider.py`: the interface and its records;
  `stripe.py`, `paypal.py`: the adapters, the only modules that import the SDKs.
- `orders.py`: one row per checkout. `fulfilment.py`: the provider's word applied to an order
  and the ledger, exactly once. `purchases.py`: every path that moves an order (checkout,
  webhook, return page, refund, reconciliation). `report.py`: revenue, refunds, disputes, owed.
"""

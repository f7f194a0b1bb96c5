"""`python -m payments`: payments from the command line, as this deployment's settings say.

reconcile [--days N]            ask the providers about recent checkouts, complete what webhooks
                                missed, and list orders the ledger disagrees with (exit 1 if any)
refund ORDER [--amount MAJOR]   refund an order at its provider (all that is left, or the amount
                                in the currency's major unit, like 2.50); its credits are taken back
orders USER                     a person's orders
report [--days N]               revenue by day and provider, refunds, disputes, credits owed
crypto                          crypto payments waiting for an administrator (no quote was open,
                                underpaid, sent from an unbound wallet, gone from the chain)
crypto-credit PAYMENT CREDITS   credit an unmatched or underpaid crypto payment by hand
                                (PAYMENT is <chain id>:<transaction hash>:<log index>)

People with open chats are told of what changed when the app's next reconciliation or webhook
runs; the ledger and the orders are right at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from credits.errors import CreditsError
from credits.ledger import parse_credits, show_credits
from payments import configured, onchain, orders, purchases, report
from payments.errors import PaymentError
from payments.packs import show_money, to_minor
from settings import get_settings
from storage.engine import create_engine
from storage.ledger import ledger_from_settings
from storage.migrate import upgrade_async


async def run(args: argparse.Namespace) -> int:
    settings = get_settings()
    await upgrade_async(settings.db_url)
    engine = create_engine(settings.db_url)
    ledger = ledger_from_settings(settings)
    await ledger.start(background=False)
    providers = configured.providers(settings)
    try:
        if args.command == "reconcile":
            done = await purchases.reconcile(engine, ledger, providers, args.days)
            print(f"checked {done.checked} checkouts; {len(done.changed)} changed")
            for change in done.changed:
                print(f"  {change.order.id}: {change.was} -> {change.order.state}")
            for name in done.unreachable:
                print(f"  could not ask {name}")
            for problem in done.drift:
                print(f"DRIFT {problem}")
            return 1 if done.drift or done.unreachable else 0
        if args.command == "refund":
            order = await orders.get(engine, args.order)
            provider = providers.get(order.provider)
            if provider is None:
                print(f"error: {order.provider} is not configured here", file=sys.stderr)
                return 2
            amount = to_minor(args.amount, order.currency) if args.amount else None
            change = await purchases.refund(engine, ledger, provider, order.id, amount)
            print(f"{order.id}: {change.order.state}, refunded "
                  f"{show_money(change.order.refunded_minor, order.currency)}; "
                  f"{change.taken / 1000:,.3f} credits taken back")  # fmt: skip
            return 0
        if args.command == "orders":
            for o in await orders.of_account(engine, args.user, limit=1000):
                print(f"{o.created_at:%Y-%m-%d %H:%M} {o.id} {o.provider:<6} {o.pack:<10} "
                      f"{show_money(o.amount_minor, o.currency):>12} {o.state}")  # fmt: skip
            return 0
        if args.command == "crypto":
            waiting = await onchain.in_states(engine, *onchain.NEEDS_ADMIN)
            for p in waiting:
                print(f"{p.key} {p.state:<12} {p.account or '(no account)'} from {p.sender}: "
                      f"{p.amount} atomic units; {p.problem or ''}")  # fmt: skip
            print(f"{len(waiting)} crypto payment(s) need an administrator")
            return 0
        if args.command == "crypto-credit":
            units = parse_credits(args.credits)
            by_hand = await onchain.credit_by_hand(engine, ledger, args.payment, units, "cli")
            print(f"{by_hand.key}: {show_credits(units)} credits to {by_hand.account}")
            return 0
        found = await report.revenue(engine, ledger, args.days)
        print("\n".join(found.lines()))
        return 0
    except (PaymentError, CreditsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await ledger.close()
        await engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m payments", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    reconcile = commands.add_parser("reconcile", help="complete what webhooks missed; report drift")
    reconcile.add_argument("--days", type=float, default=3.0)
    refund = commands.add_parser("refund", help="refund an order at its provider")
    refund.add_argument("order")
    refund.add_argument("--amount", help="in the currency's major unit (2.50); default: all left")
    listed = commands.add_parser("orders", help="a person's orders")
    listed.add_argument("user")
    commands.add_parser("crypto", help="crypto payments waiting for an administrator")
    by_hand = commands.add_parser("crypto-credit", help="credit a crypto payment by hand")
    by_hand.add_argument("payment", help="<chain id>:<transaction hash>:<log index>")
    by_hand.add_argument("credits", help="credits to give, like 500 or 12.5")
    reported = commands.add_parser("report", help="revenue, refunds, disputes, credits owed")
    reported.add_argument("--days", type=int, default=30)
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())

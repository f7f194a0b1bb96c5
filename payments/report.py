"""What an administrator reads about money: revenue by day and provider, refunds, disputes, and
the credits people owe (taken back by a refund or a dispute after they were spent)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from credits.ledger import show_credits
from credits.store import Ledger
from payments import orders
from payments.packs import show_money


@dataclass
class Revenue:
    days: int
    # (day, provider, currency) -> [orders paid, amount paid, amount refunded]
    by_day: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    disputed: list[orders.Order] = field(default_factory=list)
    refunded: list[orders.Order] = field(default_factory=list)
    owed: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"Revenue, last {self.days} days (by the day the checkout started, UTC):"]
        out += [
            f"  {day}  {provider:<7} {n:>4} paid  {show_money(paid, cur):>14}"
            f"  refunded {show_money(back, cur):>12}"
            for (day, provider, cur), (n, paid, back) in sorted(self.by_day.items())
        ] or ["  nothing sold"]
        out.append(f"Refunds: {len(self.refunded)} orders")
        for o in self.refunded:
            out.append(
                f"  {o.id} {o.account} {show_money(o.refunded_minor, o.currency)} of "
                f"{show_money(o.amount_minor, o.currency)} ({o.provider})"
            )
        out.append(f"Disputes: {len(self.disputed)} orders")
        for o in self.disputed:
            out.append(
                f"  {o.id} {o.account} {o.state.replace('_', ' ')} "
                f"{show_money(o.amount_minor, o.currency)} ({o.provider})"
            )
        out.append(f"Credits owed: {len(self.owed)} people")
        out += [f"  {who}: {show_credits(units)} credits" for who, units in self.owed.items()]
        return out


async def revenue(engine: AsyncEngine, ledger: Ledger, days: int = 30) -> Revenue:
    since = datetime.now(UTC) - timedelta(days=days)
    found = Revenue(days, owed=await ledger.owing())
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for order in await orders.since(engine, since):
        if not order.paid or order.created_at < since:
            continue
        row = totals[order.created_at.strftime("%Y-%m-%d"), order.provider, order.currency]
        row[0] += 1
        row[1] += order.received_minor
        row[2] += order.refunded_minor
        if order.refunded_minor:
            found.refunded.append(order)
        if order.dispute:
            found.disputed.append(order)
    found.by_day = dict(totals)
    return found

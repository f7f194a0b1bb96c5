"""`/usage`: a person's statement of account.

What they spent by day, kind of work (chat, images, vision...) and model (a Plotly chart and a
table), their latest transfers, and for
any of those a receipt: the log entry, its inclusion proof and the latest signed checkpoint,
checked here and attached so it can be checked again anywhere (`python -m credits check-receipt`).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import chainlit as cl
from plotly import graph_objects as go

from credits.errors import NotYetCheckpointed, UnknownTransfer
from credits.ledger import Kind, Transfer, credits, show_credits, user_account
from credits.receipts import check_receipt, receipt
from credits.store import Ledger, day_of
from ui.command import Command
from ui.deployment import Deployment, person
from ui.wallet import AUTHOR

DAYS = 30  # the window of the chart and table
LAST = 10  # transfers listed, each with a receipt button
RECEIPT_ACTION = "receipt"

Spending = dict[tuple[str, str, str], int]  # (day, kind of work, model id) -> units
# What each kind of work is called (a kind not here is shown as it is recorded).
KINDS = {"chat": "Chat", "image": "Images", "vision": "Vision", "summary": "Summary",
         "task": "Tasks"}  # fmt: skip
WORK = {"chat": "Answer", "image": "Images", "vision": "Answer about an image",
        "summary": "Summary", "task": "Task step"}  # fmt: skip


def spending(charges: list[Transfer]) -> Spending:
    """Units spent per day, kind of work and model."""
    totals: Spending = defaultdict(int)
    for t in charges:
        kind, model = str(t.meta.get("kind", "chat")), str(t.meta.get("model", "other"))
        totals[day_of(t.ts_us), kind, model] += t.amount
    return dict(totals)


def series(kind: str, model: str, labels: Mapping[str, str]) -> str:
    """`Images · FLUX schnell`: one kind of work on one model."""
    return f"{KINDS.get(kind, kind)} · {labels.get(model, model)}"


def window(today: datetime, days: int = DAYS) -> list[str]:
    """The last `days` days up to `today`, oldest first, as YYYY-MM-DD."""
    return [(today - timedelta(days=n)).strftime("%Y-%m-%d") for n in range(days - 1, -1, -1)]


def chart(totals: Spending, days: list[str], labels: Mapping[str, str]) -> go.Figure:
    """Stacked daily bars, one colour per kind of work and model, in credits."""
    figure = go.Figure()
    for kind, model in sorted({(k, m) for _, k, m in totals}):
        figure.add_bar(
            name=series(kind, model, labels),
            x=days,
            y=[float(credits(totals.get((day, kind, model), 0))) for day in days],
        )
    figure.update_layout(
        barmode="stack",
        title=f"Credits spent per day, last {len(days)} days",
        yaxis_title="credits",
        legend_title="work · model",
        margin={"l": 40, "r": 10, "t": 50, "b": 40},
        paper_bgcolor="rgba(0,0,0,0)",  # the page's own colour, light or dark theme
        plot_bgcolor="rgba(127,127,127,0.08)",
        font={"color": "#888"},
    )
    return figure


def table(totals: Spending, labels: Mapping[str, str]) -> str:
    """A Markdown table by day (newest first), kind of work and model, with the total."""
    if not totals:
        return f"Nothing spent in the last {DAYS} days."
    rows = ["| Day | Work | Model | Credits |", "|---|---|---|---:|"]
    for (day, kind, model), units in sorted(totals.items(), reverse=True):
        rows.append(
            f"| {day} | {KINDS.get(kind, kind)} | {labels.get(model, model)} | "
            f"{show_credits(units)} |"
        )
    rows.append(f"| **Total** | | | **{show_credits(sum(totals.values()))}** |")
    return "\n".join(rows)


def describe(t: Transfer, labels: Mapping[str, str]) -> str:
    """What a transfer was, in a person's words."""
    meta = t.meta
    model = labels.get(str(meta.get("model", "")), str(meta.get("model", "")))
    reason = f": {meta['reason']}" if meta.get("reason") else ""
    match t.kind, t.code:
        case Kind.POSTED, "welcome":
            return "Welcome bonus"
        case Kind.POSTED, "grant":
            return f"Granted by an administrator{reason}"
        case Kind.POSTED, "adjustment":
            return f"Correction by an administrator{reason}"
        case Kind.PENDING, _:
            held = {"image": "images", "task": "a task step"}.get(
                str(meta.get("kind")), "an answer"
            )
            return f"Held for {held} ({model})" if model else "Held"
        case Kind.POST, _:
            work = WORK.get(str(meta.get("kind", "chat")), "Work")
            return f"{work} ({model})" if model else "Charged"
        case Kind.VOID, _:
            return "Hold released: nothing charged"
        case Kind.EXPIRE, _:
            return "Hold expired: nothing charged"
    return t.code


def signed(t: Transfer, account: str) -> str:
    """The transfer's effect on the person, as they see it: +in, −out, or held / returned."""
    amount = show_credits(t.amount)
    if t.kind is Kind.PENDING:
        return f"{amount} held"
    if t.kind in (Kind.VOID, Kind.EXPIRE):
        return f"{amount} returned"
    return f"+{amount}" if t.credit == account else f"−{amount}"


def transfers_table(transfers: list[Transfer], account: str, labels: Mapping[str, str]) -> str:
    if not transfers:
        return "No transfers yet."
    rows = ["| # | When (UTC) | What | Credits | Transfer |", "|---:|---|---|---:|---|"]
    for n, t in enumerate(transfers, 1):
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t.ts_us / 1e6))
        rows.append(
            f"| {n} | {when} | {describe(t, labels)} | {signed(t, account)} | `{t.transfer_id}` |"
        )
    return "\n".join(rows)


def receipt_actions(transfers: list[Transfer]) -> list[cl.Action]:
    return [
        cl.Action(
            name=RECEIPT_ACTION,
            payload={"transfer": t.transfer_id},
            label=f"Receipt #{n}",
            tooltip=f"Prove {t.transfer_id} is in the signed ledger log",
        )
        for n, t in enumerate(transfers, 1)
    ]


async def statement(
    ledger: Ledger, user: str, labels: Mapping[str, str], author: str
) -> cl.Message:
    """The `/usage` message for `user`: chart, table, last transfers with receipt buttons."""
    today = datetime.now(UTC)
    days = window(today)
    since_us = int(datetime.strptime(days[0], "%Y-%m-%d").replace(tzinfo=UTC).timestamp() * 1e6)
    totals = spending(await ledger.charges(user, since_us=since_us))
    last = await ledger.history(user, limit=LAST)
    balance = await ledger.balance(user)
    text = "\n\n".join(
        (
            f"**Your credits**: {show_credits(balance.available)} available"
            + (
                f", {show_credits(balance.held)} held by answers in progress"
                if balance.held
                else ""
            )
            + ".",
            f"**Spent by day, kind of work and model** (last {DAYS} days)",
            table(totals, labels),
            f"**Last {len(last)} transfers** (a receipt proves one is in the signed ledger log)",
            transfers_table(last, user_account(user), labels),
        )
    )
    elements: list[cl.Element] = []
    if totals:
        elements.append(
            cl.Plotly(name="spending", figure=chart(totals, days, labels), display="inline")
        )
    return cl.Message(content=text, elements=elements, actions=receipt_actions(last), author=author)


async def prove(ledger: Ledger, user: str, transfer_id: str, author: str) -> cl.Message:
    """A checked receipt for one of `user`'s transfers; another person's transfer is not found."""
    transfer = await ledger.transfer(transfer_id)
    account = user_account(user)
    if transfer is None or account not in (transfer.debit, transfer.credit):
        return cl.Message(content=f"You have no transfer `{transfer_id}`.", author=author)
    try:
        data = await receipt(ledger, transfer_id)
    except (NotYetCheckpointed, UnknownTransfer):  # committed, not yet in a signed checkpoint
        return cl.Message(
            content=f"The transfer `{transfer_id}` is in the ledger, but no signed checkpoint "
            "covers it yet. One is signed within seconds: press its receipt button again then.",
            author=author,
        )
    checkpoint = data["checkpoint"]
    signed_at = datetime.fromtimestamp(checkpoint["timestamp_us"] / 1e6, UTC)
    if check_receipt(data, ledger.pinned_key):
        verdict = (
            f"**Receipt for `{transfer_id}`: checks.** It is entry {data['index'] + 1:,} of the "
            f"{checkpoint['size']:,} in the ledger's log; its inclusion proof "
            f"({len(data['proof'])} hashes) leads to the root signed at "
            f"{signed_at:%Y-%m-%d %H:%M:%S} UTC by key `{checkpoint['key_id']}`."
        )
    else:  # the ledger cannot prove its own entry: tell the person, do not hide it
        verdict = (
            f"**Receipt for `{transfer_id}` does NOT check** against the signed log. "
            "Please tell an administrator; they can run `python -m credits verify`."
        )
    attached = cl.File(
        name=f"receipt-{transfer_id.replace('/', '-').replace(':', '-')}.json",
        content=json.dumps(data, indent=2).encode(),
        mime="application/json",
        display="inline",
    )
    note = (
        "The attached file holds the entry, the proof, the signed checkpoint and the public key, "
        "so it can be checked again anywhere (`python -m credits check-receipt FILE`)."
    )
    return cl.Message(content=f"{verdict}\n\n{note}", elements=[attached], author=author)


async def receipt_action(d: Deployment, action: cl.Action) -> None:
    """A receipt button of the /usage message."""
    wanted = str(action.payload.get("transfer", ""))
    await (await prove(d.ledger, person(), wanted, AUTHOR)).send()


async def _usage(d: Deployment, verb: str, text: str, message: cl.Message) -> None:
    labels = {m.id: m.label for m in d.catalog.models.values()}
    labels |= {kind: price.label for kind, price in d.catalog.work.items()}  # a task's tools
    await (await statement(d.ledger, person(), labels, AUTHOR)).send()


COMMANDS = (
    Command("usage", "chart-column", "Your spending, last transfers and their receipts", _usage),
)

"""Payments over HTTP: the providers' webhooks, the pages people come back to, their purchases.

    POST /api/payments/{provider}/webhook   signature checked on the raw body: 200 once stored
                                            (applied by payments/inbox.py), 400 for a signature
                                            that does not hold, 503 when PayPal's certificate
                                            could not be had (it retries), 404 for no provider
    GET  /payments/{provider}/return        the person's own order brought up to date, and said
    GET  /payments/cancel                   nothing was charged
    GET  /billing                           the person's purchases, with receipts and links
    GET  /billing/receipt/{order}           the ledger receipt of one of them (JSON)

Webhooks carry no session: what they say is believed only once the provider's signature holds,
and then only as a trigger to ask the provider. The pages need the person signed in, and show
only their own orders.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable, Mapping

from chainlit.auth.cookie import get_token_from_cookies
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.sessions import Standings
from credits.errors import NotYetCheckpointed, UnknownTransfer
from credits.ledger import show_credits
from credits.receipts import receipt
from credits.store import Ledger
from payments import orders, purchases
from payments.errors import ForgedNotice, ProviderDown, UnknownOrder
from payments.fulfilment import Change
from payments.inbox import Inbox
from payments.packs import show_money
from payments.provider import PaymentProvider

log = logging.getLogger("payments")
MAX_WEBHOOK_BYTES = 256 * 1024
Tell = Callable[[Change], Awaitable[None]]


def router(
    engine: AsyncEngine,
    ledger: Ledger,
    providers: Mapping[str, PaymentProvider],
    standings: Standings,
    secret: str,
    tell: Tell,
    inbox: Inbox,
) -> APIRouter:
    routes = APIRouter()

    async def signed_in(request: Request) -> str | None:
        token = get_token_from_cookies(dict(request.cookies))
        return await standings.account_of(token, secret) if token else None

    @routes.post("/api/payments/{name}/webhook", include_in_schema=False)
    async def webhook(name: str, request: Request) -> Response:
        provider = providers.get(name)
        if provider is None:
            return JSONResponse({"error": f"{name} payments are not configured here"}, 404)
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            return JSONResponse({"error": "notification too large"}, 413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            notice = await inbox.receive(name, body, headers)
        except ForgedNotice as refused:
            log.warning("payments: %s webhook refused: %s", name, refused)
            return JSONResponse({"error": str(refused)}, 400)
        except ProviderDown as down:  # PayPal's certificate or its verify call
            log.warning("payments: %s webhook could not be verified yet: %s", name, down)
            return JSONResponse({"error": "try again later"}, 503)
        return JSONResponse({"received": True, "event": notice.event_id})

    @routes.get("/payments/{name}/return", include_in_schema=False)
    async def came_back(name: str, request: Request) -> Response:
        account = await signed_in(request)
        if account is None:
            return RedirectResponse("/login", status_code=302)
        provider = providers.get(name)
        order_id = request.query_params.get("order", "")
        if provider is None:
            return page("Payment", "There is no such payment here.", 404)
        try:
            change = await purchases.on_return(engine, ledger, provider, account, order_id)
        except UnknownOrder:
            return page("Payment", "You have no such order.", 404)
        except ProviderDown:
            return page(
                "Payment",
                f"{name.capitalize()} could not be reached just now. If you paid, your credits "
                "arrive as soon as it confirms: you can close this page.",
                503,
            )
        if change.news:
            await tell(change)
        return page("Payment", said(change.order), 200)

    @routes.get("/payments/cancel", include_in_schema=False)
    async def cancelled(request: Request) -> Response:
        if await signed_in(request) is None:
            return RedirectResponse("/login", status_code=302)
        return page("Payment", "The payment was cancelled: nothing was charged.", 200)

    @routes.get("/billing", include_in_schema=False)
    async def billing(request: Request) -> Response:
        account = await signed_in(request)
        if account is None:
            return RedirectResponse("/login", status_code=302)
        bought = await orders.of_account(engine, account)
        return page("Your purchases", "", 200, purchases_table(bought))

    @routes.get("/billing/receipt/{order_id}", include_in_schema=False)
    async def ledger_receipt(order_id: str, request: Request) -> Response:
        """The ledger receipt of one of the person's purchases: its entry, inclusion proof and
        signed checkpoint (`python -m credits check-receipt FILE` checks it anywhere)."""
        account = await signed_in(request)
        if account is None:
            return RedirectResponse("/login", status_code=302)
        try:
            order = await orders.get(engine, order_id, account)
        except UnknownOrder:
            return JSONResponse({"detail": "You have no such order."}, 404)
        if order.transfer_id is None:
            return JSONResponse({"detail": "This order has not been credited."}, 404)
        try:
            proof = await receipt(ledger, order.transfer_id)
        except (NotYetCheckpointed, UnknownTransfer):
            return JSONResponse({"detail": "No signed checkpoint covers it yet: try again."}, 425)
        return JSONResponse(
            proof,
            headers={"Content-Disposition": f"attachment; filename=receipt-{order.id}.json"},
        )

    return routes


def said(order: orders.Order) -> str:
    """What the return page says of an order."""
    credits = show_credits(order.units)
    if order.state == "paid":
        return f"Payment received: {credits} credits are on your balance. You can close this page."
    if order.paid:
        return f"This order is {order.status}."
    if order.state == "pending" and order.provider_status == "processing":
        return (
            f"Your payment is processing. The {credits} credits arrive when it clears; the chat "
            "tells you. You can close this page."
        )
    if order.state == "failed":
        return "The payment failed: nothing was credited. " + (
            "An administrator has been told." if order.problem else "You may try again."
        )
    if order.state == "expired":
        return "This checkout expired before it was paid: nothing was charged."
    return (
        "The payment is not complete yet. When it is, the chat tells you. You can close this page."
    )


def purchases_table(bought: list[orders.Order]) -> str:
    if not bought:
        return "<p>No purchases yet. Type <code>/buy</code> in the chat.</p>"
    rows = []
    for o in bought:
        shown = o.payment_ref if o.provider == "crypto" and o.payment_ref else "receipt"
        receipt = (
            f"<a href='{html.escape(o.receipt_url)}' target='_blank' rel='noopener'>"
            f"{html.escape(shown)}</a>"
            if o.receipt_url
            else html.escape(o.payment_ref or "")
        )
        ledger = (
            f"<a href='/billing/receipt/{html.escape(o.id)}'>{html.escape(o.transfer_id)}</a>"
            if o.transfer_id
            else ""
        )
        rows.append(
            f"<tr><td>{o.created_at:%Y-%m-%d %H:%M}</td><td>{html.escape(o.pack)}</td>"
            f"<td>{show_credits(o.units if o.credited is None else o.credited)}</td>"
            f"<td>{show_money(o.amount_minor, o.currency)}</td>"
            f"<td>{o.provider}</td><td class='status'>{o.status}</td><td>{receipt}</td>"
            f"<td>{ledger}</td></tr>"
        )
    return (
        "<table id='purchases'><thead><tr><th>Date (UTC)</th><th>Pack</th><th>Credits</th>"
        "<th>Paid</th><th>Provider</th><th>Status</th><th>Provider's receipt</th>"
        "<th>Ledger receipt</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        "<p>A ledger receipt is the purchase's entry in the ledger's signed log with its inclusion "
        "proof: <code>python -m credits check-receipt FILE</code> checks it anywhere.</p>"
    )


def page(title: str, message: str, status: int, extra: str = "") -> HTMLResponse:
    said_html = f"<p id='message'>{html.escape(message)}</p>" if message else ""
    body = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'></head>"
        "<body style='font-family: system-ui, sans-serif; max-width: 52rem; margin: 4rem auto;'>"
        f"<h1>{html.escape(title)}</h1>{said_html}{extra}"
        "<p><a href='/'>Back to the chat</a></p></body></html>"
    )
    return HTMLResponse(body, status_code=status)

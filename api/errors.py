"""The one place errors become what an HTTP client reads.

Our routes raise the packages' own errors (`AuthError`, `CreditsError`, `AgentError`,
`PaymentError`) and this
turns them into answers: a page that says why for the sign-in pages a browser is sent to, JSON with
a `detail` elsewhere. Anything else is a fault of ours: logged with a reference the client is given,
and never shown (it could hold a query, a path or a secret).
"""

from __future__ import annotations

import html
import logging
import secrets

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from agents.errors import AgentError, ModelNotAvailable
from auth.errors import AuthError
from credits import errors as credit
from payments.errors import (
    ForgedNotice,
    Mismatch,
    NotFulfillable,
    NotRefundable,
    PaymentError,
    ProviderDown,
    UnknownOrder,
    UnknownPack,
)

log = logging.getLogger("api")

CREDIT_STATUS: dict[type[credit.CreditsError], int] = {
    credit.InvalidRequest: 400,
    credit.InsufficientCredits: 402,
    credit.UnknownAccount: 404,
    credit.UnknownTransfer: 404,
    credit.UnknownHold: 404,
    credit.IdempotencyConflict: 409,
    credit.HoldResolved: 409,
    credit.HoldExpired: 409,
    credit.SettleExceedsHold: 409,
    credit.HoldNotCreated: 409,
    credit.NotYetCheckpointed: 425,
    credit.WriterStopped: 503,
}


def install(app: FastAPI) -> None:
    """Answer every route's errors here (before the app starts serving)."""
    app.add_exception_handler(AuthError, _auth)
    app.add_exception_handler(credit.CreditsError, _credits)
    app.add_exception_handler(AgentError, _agents)
    app.add_exception_handler(PaymentError, _payments)


async def _auth(request: Request, error: Exception) -> Response:
    assert isinstance(error, AuthError)
    log.warning("%s %s refused: %s", request.method, request.url.path, error)
    return refused(str(error), error.status)


async def _credits(request: Request, error: Exception) -> Response:
    assert isinstance(error, credit.CreditsError)
    status = next((s for kind, s in CREDIT_STATUS.items() if isinstance(error, kind)), None)
    if status is None:  # the ledger failed its own checks: not the client's doing
        return fault(request, error)
    return JSONResponse({"detail": f"{error} Nothing was charged."}, status_code=status)


async def _agents(request: Request, error: Exception) -> Response:
    status = 400 if isinstance(error, ModelNotAvailable) else 502
    return JSONResponse({"detail": str(error)}, status_code=status)


PAYMENT_STATUS: dict[type[PaymentError], int] = {
    UnknownOrder: 404,
    UnknownPack: 404,
    NotFulfillable: 409,
    NotRefundable: 409,
    ForgedNotice: 400,
    Mismatch: 409,
    ProviderDown: 503,
}


async def _payments(request: Request, error: Exception) -> Response:
    status = next((s for kind, s in PAYMENT_STATUS.items() if isinstance(error, kind)), 400)
    return JSONResponse({"detail": str(error)}, status_code=status)


def fault(request: Request, error: BaseException) -> Response:
    """A fault of ours: logged in full under a reference, shown only as that reference."""
    ref = secrets.token_hex(4)
    log.error("%s %s failed [%s]", request.method, request.url.path, ref, exc_info=error)
    detail = f"Something went wrong on our side (reference {ref}); nothing was charged."
    return JSONResponse({"detail": detail}, status_code=500)


def refused(reason: str, status: int = 400) -> HTMLResponse:
    """A plain sign-in page that says why, and how to try again."""
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sign-in refused</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'></head>"
        "<body style='font-family: system-ui, sans-serif; max-width: 36rem; margin: 4rem auto;'>"
        f"<h1>Sign-in refused</h1><p id='reason'>{html.escape(reason)}</p>"
        "<p><a href='/login'>Back to the sign-in page</a></p></body></html>"
    )
    return HTMLResponse(page, status_code=status)

"""The two edges where errors become what people read: one handler for HTTP (api/errors.py) and
one for the chat (ui/errors.py). Each says what happened and what it cost, and never shows a fault
of ours (it could hold a query or a path)."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from agents.errors import ModelFailed, ModelNotAvailable
from api import errors as http_errors
from auth.errors import NoSuchProvider, NotSignedIn, ProviderFailed, SignInRefused
from credits.errors import (
    HoldNotCreated,
    IdempotencyConflict,
    InsufficientCredits,
    IntegrityError,
    WriterStopped,
)
from payments.errors import NotFulfillable, UnknownOrder
from ui import errors as chat_errors

RAISED: dict[str, Exception] = {
    "short": InsufficientCredits("user:ann has 5 units available, 9 needed.", 5, 9),
    "conflict": IdempotencyConflict("Transfer id 'x' was already used for a different request."),
    "stopped": WriterStopped("The ledger's writer stopped."),
    "tampered": IntegrityError("entry 7 at /srv/data/ledger.db does not hash to its stored hash"),
    "no-model": ModelNotAvailable("There is no model called 'gpt-9'."),
    "model-failed": ModelFailed("The model server answered 500."),
    "refused": SignInRefused("This sign-in has expired. Please sign in again."),
    "no-provider": NoSuchProvider("There is no sign-in provider 'acme' here."),
    "provider": ProviderFailed("Acme's discovery document could not be read."),
    "anonymous": NotSignedIn("Sign in first."),
    "no-order": UnknownOrder("There is no order 'ord_x'."),
    "failed-order": NotFulfillable("Order ord_y is failed: it cannot be paid for."),
}


@pytest.fixture
async def client() -> httpx.AsyncClient:
    app = FastAPI()
    http_errors.install(app)

    @app.get("/raise/{name}")
    async def raise_it(name: str) -> None:
        raise RAISED[name]

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize(
    ("name", "status", "said"),
    [
        ("short", 402, "5 units available, 9 needed. Nothing was charged."),
        ("conflict", 409, "already used for a different request. Nothing was charged."),
        ("stopped", 503, "writer stopped. Nothing was charged."),
        ("no-model", 400, "There is no model called 'gpt-9'."),
        ("model-failed", 502, "The model server answered 500."),
        ("no-order", 404, "There is no order 'ord_x'."),
        ("failed-order", 409, "it cannot be paid for."),
    ],
)
async def test_http_clients_read_json_that_says_why(
    client: httpx.AsyncClient, name: str, status: int, said: str
) -> None:
    answer = await client.get(f"/raise/{name}")
    assert answer.status_code == status
    assert said in answer.json()["detail"]


@pytest.mark.parametrize(
    ("name", "status"),
    [("refused", 400), ("no-provider", 404), ("provider", 502), ("anonymous", 401)],
)
async def test_sign_in_refusals_are_a_page_that_says_why(
    client: httpx.AsyncClient, name: str, status: int
) -> None:
    answer = await client.get(f"/raise/{name}")
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    assert str(RAISED[name]).replace("'", "&#x27;") in answer.text
    assert "<a href='/login'>" in answer.text


async def test_a_fault_of_ours_is_logged_under_a_reference_and_not_shown(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="api"):
        answer = await client.get("/raise/tampered")
    assert answer.status_code == 500
    detail = answer.json()["detail"]
    assert "/srv/data" not in detail and "hash" not in detail
    [record] = [r for r in caplog.records if r.name == "api"]
    reference = record.getMessage().rsplit("[", 1)[1].rstrip("]")
    assert f"reference {reference}" in detail
    assert "ledger.db does not hash" in str(record.exc_info[1] if record.exc_info else "")


@pytest.mark.parametrize(
    ("error", "doing", "said"),
    [
        (chat_errors.Refused("There is no user 'bob'."), "/grant", "/grant refused: There is no "
         "user 'bob'. Nothing was changed."),
        (chat_errors.Refused("Too long."), "", "Too long."),
        (RAISED["short"], "", "Not enough credits: you have 0.005. Nothing was charged."),
        (HoldNotCreated("Hold 'turn:1' exists already."), "", "was not run again"),
        (RAISED["stopped"], "", "not available right now. Nothing was charged"),
        (RAISED["no-model"], "", "There is no model called 'gpt-9'. Choose another model"),
        (RAISED["no-order"], "", "There is no order 'ord_x'."),
    ],
)  # fmt: skip
def test_chat_text_for_each_error(error: Exception, doing: str, said: str) -> None:
    assert said in chat_errors.text_for(error, doing)

"""Sign-In with Ethereum messages (EIP-4361) as the standard writes them: parsed strictly,
written back to the letter, and their signer recovered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from payments.siwe import BadMessage, parse, signer

# The standard's example, without its resources (this app never asks for any).
EXAMPLE = """service.invalid wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

I accept the ServiceOrg Terms of Service: https://service.invalid/tos

URI: https://service.invalid/login
Version: 1
Chain ID: 1
Nonce: 32891756
Issued At: 2021-09-30T16:25:24Z"""


def test_the_standards_example_is_read_and_written_back() -> None:
    message = parse(EXAMPLE)
    assert message.domain == "service.invalid"
    assert message.address == "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    assert (
        message.statement == "I accept the ServiceOrg Terms of Service: https://service.invalid/tos"
    )
    assert (message.uri, message.chain_id, message.nonce) == (
        "https://service.invalid/login", 1, "32891756",
    )  # fmt: skip
    assert message.issued_at == datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)
    assert message.text() == EXAMPLE


def test_optional_fields_and_no_statement() -> None:
    text = (
        EXAMPLE.replace(
            "I accept the ServiceOrg Terms of Service: https://service.invalid/tos\n\n", ""
        )
        + "\nExpiration Time: 2021-09-30T16:35:24Z\nNot Before: 2021-09-30T16:25:24Z\nRequest ID: r1"
    )
    message = parse(text)
    assert message.statement is None and message.request_id == "r1"
    assert message.expiration_time == datetime(2021, 9, 30, 16, 35, 24, tzinfo=UTC)
    assert message.text() == text


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t: t.replace("Chain ID: 1", "Chain ID: one"), "chain id is not a number"),
        (lambda t: t.replace("Nonce: 32891756", "Nonce: 123"), "nonce"),
        (lambda t: t.replace("2021-09-30T16:25:24Z", "yesterday"), "RFC 3339"),
        (lambda t: t.replace("URI: ", "Url: "), "no 'URI' line"),
        (lambda t: t.replace("service.invalid wants", "bad domain! wants"), "no valid domain"),
        (lambda t: t + "\nResources:\n- https://x", "lines this app does not accept"),
    ],
)
def test_malformed_messages_are_refused(change, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadMessage, match=reason):
        parse(change(EXAMPLE))


def test_the_signer_is_recovered() -> None:
    key = Account.create()
    signature = key.sign_message(encode_defunct(text=EXAMPLE)).signature
    assert signer(EXAMPLE, "0x" + bytes(signature).hex()) == key.address.lower()
    assert signer(EXAMPLE + " ", bytes(signature).hex()) != key.address.lower()

"""Sign-In with Ethereum (EIP-4361) messages: written, parsed strictly, and their signatures
recovered (EIP-191 `personal_sign`, with eth-account).

The `siwe` package pins web3 below 8, and the format is small, so it is done here to the letter of
the standard: the ABNF's lines in its order, an EIP-55 checksummed address, version 1, a nonce of
at least 8 letters and digits, RFC 3339 times. What the app checks of a parsed message against
its own domain, URI, chain, nonce and clock is in `payments/wallets.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import is_checksum_address

HEADER = " wants you to sign in with your Ethereum account:"
_FIELDS = ("URI", "Version", "Chain ID", "Nonce", "Issued At")
_OPTIONAL = ("Expiration Time", "Not Before", "Request ID")
_NONCE = re.compile(r"[A-Za-z0-9]{8,}")
_DOMAIN = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?[A-Za-z0-9.-]+(?::\d{1,5})?")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
_MAX_LENGTH = 4096


class BadMessage(ValueError):
    """Not a Sign-In with Ethereum message, or not one this app would accept."""


@dataclass(frozen=True)
class SiweMessage:
    domain: str
    address: str  # EIP-55 checksummed
    statement: str | None
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    request_id: str | None = None
    version: str = "1"

    def text(self) -> str:
        """The message exactly as the wallet signs it."""
        lines = [self.domain + HEADER, self.address, ""]
        if self.statement:
            lines += [self.statement, ""]
        lines += [
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {_show(self.issued_at)}",
        ]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {_show(self.expiration_time)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {_show(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        return "\n".join(lines)


def parse(text: str) -> SiweMessage:
    """The message `text`, if it is a well-formed EIP-4361 message (`BadMessage` if not)."""
    if len(text) > _MAX_LENGTH:
        raise BadMessage("The message is too long to be a sign-in message.")
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) < 8 or not lines[0].endswith(HEADER):
        raise BadMessage("This is not a Sign-In with Ethereum message.")
    domain, address = lines[0].removesuffix(HEADER), lines[1]
    if not _DOMAIN.fullmatch(domain):
        raise BadMessage(f"The message names no valid domain ({domain!r}).")
    if not is_checksum_address(address):
        raise BadMessage("The message's address is not an EIP-55 checksummed address.")
    if lines[2] != "":
        raise BadMessage("The message's address must be followed by a blank line.")
    rest, statement = lines[3:], None
    if rest and not rest[0].startswith("URI: "):
        statement = rest[0]
        if not statement or "\n" in statement or len(rest) < 2 or rest[1] != "":
            raise BadMessage("The message's statement must be one line followed by a blank line.")
        rest = rest[2:]
    elif rest and rest[0] == "":
        rest = rest[1:]
    values: dict[str, str] = {}
    for name in _FIELDS:
        if not rest or not rest[0].startswith(f"{name}: "):
            raise BadMessage(f"The message has no {name!r} line where the standard puts it.")
        values[name] = rest.pop(0).removeprefix(f"{name}: ")
    for name in _OPTIONAL:
        if rest and rest[0].startswith(f"{name}: "):
            values[name] = rest.pop(0).removeprefix(f"{name}: ")
    if rest:
        raise BadMessage(f"The message has lines this app does not accept: {rest[0]!r}.")
    if values["Version"] != "1":
        raise BadMessage("Only version 1 of Sign-In with Ethereum is accepted.")
    if not values["Chain ID"].isdigit():
        raise BadMessage("The message's chain id is not a number.")
    if not _NONCE.fullmatch(values["Nonce"]):
        raise BadMessage("The message's nonce is not at least 8 letters and digits.")
    return SiweMessage(
        domain, address, statement, values["URI"], int(values["Chain ID"]), values["Nonce"],
        _time(values["Issued At"]), _maybe_time(values.get("Expiration Time")),
        _maybe_time(values.get("Not Before")), values.get("Request ID"),
    )  # fmt: skip


def signer(text: str, signature: str) -> str:
    """The address (lowercase) whose key signed `text` (EIP-191); `BadMessage` if the signature
    is not one."""
    try:
        raw = bytes.fromhex(signature.strip().removeprefix("0x"))
    except ValueError:
        raise BadMessage("The signature is not hexadecimal.") from None
    if len(raw) != 65:
        raise BadMessage("The signature is not 65 bytes long (an ordinary account's signature).")
    try:
        return str(Account.recover_message(encode_defunct(text=text), signature=raw)).lower()
    except Exception:  # eth-keys refuses a signature off the curve in several ways
        raise BadMessage("The signature does not belong to any key.") from None


def _maybe_time(text: str | None) -> datetime | None:
    return None if text is None else _time(text)


def _time(text: str) -> datetime:
    if not _TIME.fullmatch(text):
        raise BadMessage(f"{text!r} is not an RFC 3339 time.")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(UTC)


def _show(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

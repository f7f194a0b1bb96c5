"""`python -m credits`: check and operate the ledger from the command line.

verify [--public-key KEY]   rebuild and check everything; exit 1 naming the first bad entry.
                            Checkpoints count only under the pinned public key (recorded in
                            DATA_DIR/ledger-public-key at first start) or KEY, given as
                            `checkpoint` prints it
audit                       totals per account kind and code, open holds, checkpoints (JSON)
checkpoint                  the latest signed checkpoint, and the key that signs them
balance USER                a user's available, held and posted credits
grant USER CREDITS --reason TEXT [--id ID]
receipt TRANSFER_ID         an inclusion proof of a transfer against a signed checkpoint (signs
                            one first if none covers it yet; receipts in the chat only read)
check-receipt FILE          check a saved receipt against this ledger's pinned public key

This entry point is the deployment's tool, not part of the library: it alone opens the ledger as
this deployment keeps it (storage/ledger.py, from the app's settings). Nothing the app imports
from `credits` reads a setting (tests/unit/test_layout.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from credits import log
from credits.errors import CreditsError
from credits.ledger import credits, parse_credits
from credits.receipts import check_receipt, receipt
from credits.report import audit
from credits.verify import verify
from settings import get_settings
from storage.ledger import ledger_from_settings


def show(units: int) -> str:
    return f"{credits(units):,.3f}"  # fixed width, for columns


READ_ONLY = frozenset({"verify", "audit", "balance", "check-receipt"})


async def run(args: argparse.Namespace) -> int:
    book = ledger_from_settings(get_settings())
    try:
        await book.start(background=False, read_only=args.command in READ_ONLY)
    except CreditsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "verify":
            report = await verify(book, public_key=args.public_key)
            print(report.summary())
            for problem in report.problems[1:]:
                print(f"  also: {problem}")
            for note in report.notes:
                print(f"  note: {note}")
            return 0 if report.ok else 1
        if args.command == "audit":
            print(json.dumps(await audit(book), indent=2))
        elif args.command == "checkpoint":
            cp = await book.checkpoint()
            print(cp.to_json())
            print(f"public key (Ed25519, base64): {log.public_key_b64(book.pinned_key)}")
        elif args.command == "balance":
            b = await book.balance(args.user)
            print(f"{args.user}: {show(b.available)} available, {show(b.held)} held, "
                  f"{show(b.posted)} posted credits")  # fmt: skip
        elif args.command == "grant":
            transfer_id = args.id or f"grant:cli:{secrets.token_hex(8)}"
            t = await book.grant(
                args.user, parse_credits(args.credits), transfer_id,
                code="grant", metadata={"reason": args.reason, "by": "cli"},
            )  # fmt: skip
            print(f"granted {show(t.amount)} credits to {args.user} ({t.transfer_id})")
        elif args.command == "receipt":  # the operator asks: a checkpoint may be signed for it
            await book.checkpoint()
            print(json.dumps(await receipt(book, args.transfer_id), indent=2))
        elif args.command == "check-receipt":
            return check_saved_receipt(args.file, book.pinned_key)
    except CreditsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await book.close()
    return 0


def check_saved_receipt(path: Path, public: Ed25519PublicKey) -> int:
    try:
        data = json.loads(path.read_text())
        ok = check_receipt(data, public)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: not a readable receipt: {exc}", file=sys.stderr)
        return 2
    if not ok:
        print("receipt does NOT check: its proof or signature does not match this ledger")
        return 1
    cp = data["checkpoint"]
    print(f"receipt checks: entry {data['index'] + 1} of {cp['size']} in the signed log")
    return 0


def public_key(text: str) -> Ed25519PublicKey:
    try:
        return log.parse_public_key(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m credits", description="The credit ledger.")
    sub = parser.add_subparsers(dest="command", required=True)
    check_all = sub.add_parser("verify", help="check the whole ledger")
    check_all.add_argument(
        "--public-key", type=public_key, help="the ledger's public key as you keep it (base64)"
    )
    sub.add_parser("audit", help="totals, open holds, checkpoints")
    sub.add_parser("checkpoint", help="the latest signed checkpoint")
    balance = sub.add_parser("balance", help="a user's balance")
    balance.add_argument("user")
    grant = sub.add_parser("grant", help="give a user credits")
    grant.add_argument("user")
    grant.add_argument("credits")
    grant.add_argument("--reason", required=True)
    grant.add_argument("--id", help="idempotency key (default: a new one)")
    rec = sub.add_parser("receipt", help="inclusion proof of a transfer")
    rec.add_argument("transfer_id")
    check = sub.add_parser("check-receipt", help="check a saved receipt")
    check.add_argument("file", type=Path)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`python -m auth`: manage logins and accounts.

python -m auth add alice@example.com [--admin] [--password-stdin]
python -m auth passwd alice@example.com [--password-stdin]   also ends the account's other sessions
python -m auth disable ACCOUNT    nobody signs in as it, its sessions end, its holds are released
python -m auth enable ACCOUNT     it may sign in again (its credits were never touched)
python -m auth logout ACCOUNT     ends all its sessions (signed out everywhere)
python -m auth identities ACCOUNT the provider sign-ins linked to an account
python -m auth unlink ACCOUNT PROVIDER SUBJECT   removes one of them
python -m auth invite EMAIL       lets the person whose provider verifies EMAIL sign up (SIGNUP)
python -m auth invitations        lists invitations, and who used them

ACCOUNT is a password login (`alice@example.com`) or an identity's account (`github:4242`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from auth import identities, passwords, signup
from auth.sessions import Standings
from settings import get_settings
from storage.engine import create_engine
from storage.ledger import ledger_from_settings
from storage.migrate import upgrade_async


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise SystemExit("The passwords differ; nothing was changed.")
    return first


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m auth", description="Manage password logins.")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="create a login")
    add.add_argument("identifier")
    add.add_argument("--admin", action="store_true", help="give it the admin role")
    add.add_argument("--password-stdin", action="store_true")
    change = sub.add_parser("passwd", help="set a login's password")
    change.add_argument("identifier")
    change.add_argument("--password-stdin", action="store_true")
    for verb, text in STANDING.items():
        sub.add_parser(verb, help=text).add_argument("account")
    sub.add_parser("identities", help="list an account's provider sign-ins").add_argument("account")
    unlink = sub.add_parser("unlink", help="remove one of an account's provider sign-ins")
    for name in ("account", "provider", "subject"):
        unlink.add_argument(name)
    sub.add_parser("invite", help="invite an email to sign up").add_argument("email")
    sub.add_parser("invitations", help="list invitations")
    args = parser.parse_args(argv)
    if args.command in STANDING:
        return await set_standing(args.command, args.account)
    if args.command in ("identities", "unlink", "invite", "invitations"):
        return await manage_sign_ups(args)

    password = read_password(args.password_stdin)
    if len(password) < 8:
        print("Use a password of at least 8 characters; nothing was changed.", file=sys.stderr)
        return 2
    settings = get_settings()
    await upgrade_async(settings.db_url)
    engine = create_engine(settings.db_url)
    try:
        if args.command == "add":
            role: passwords.Role = "admin" if args.admin else "user"
            if not await passwords.create(engine, args.identifier, password, role):
                print(f"{args.identifier} already exists; nothing was changed.", file=sys.stderr)
                return 1
            print(f"Created {role} login {passwords.normalise(args.identifier)}.")
        elif not await passwords.set_password(engine, args.identifier, password):
            print(f"There is no login {args.identifier}.", file=sys.stderr)
            return 1
        else:
            await Standings(engine).set(passwords.normalise(args.identifier), end_sessions=True)
            print(
                f"Password changed for {passwords.normalise(args.identifier)}; its sessions ended."
            )
    finally:
        await engine.dispose()
    return 0


async def manage_sign_ups(args: argparse.Namespace) -> int:
    settings = get_settings()
    await upgrade_async(settings.db_url)
    engine = create_engine(settings.db_url)
    try:
        if args.command == "identities":
            found = await identities.links(engine, args.account)
            for link in found:
                print(f"{link.provider} {link.subject} {link.email or '(no verified email)'}")
            print(f"{args.account}: {len(found) or 'none'}")
        elif args.command == "unlink":
            if not await identities.unlink(engine, args.account, args.provider, args.subject):
                print(f"{args.account} has no such sign-in; nothing was changed.", file=sys.stderr)
                return 1
            print(f"Removed {args.provider} {args.subject} from {args.account}.")
        elif args.command == "invite":
            if not await signup.invite(engine, args.email, "cli"):
                print(f"{args.email} was invited already.", file=sys.stderr)
                return 1
            print(f"Invited {passwords.normalise(args.email)} (SIGNUP is {settings.signup}).")
        else:
            for email, used_by in await signup.pending(engine):
                print(f"{email} {'used by ' + used_by if used_by else 'not used yet'}")
    finally:
        await engine.dispose()
    return 0


STANDING = {
    "disable": "disable an account: its sessions end, its holds are released",
    "enable": "let a disabled account sign in again",
    "logout": "end all sessions of an account",
}


async def set_standing(verb: str, account: str) -> int:
    settings = get_settings()
    await upgrade_async(settings.db_url)
    engine = create_engine(settings.db_url)
    try:
        standing = await Standings(engine).apply(verb, account)
    finally:
        await engine.dispose()
    released = 0
    if verb == "disable":
        ledger = ledger_from_settings(settings)
        await ledger.start(background=False)
        try:
            released = await ledger.release_all(account, "account disabled")
        finally:
            await ledger.close()
    state = "disabled" if standing.disabled else "enabled"
    ended = "; its sessions ended" if verb != "enable" else ""
    holds = f"; {released} hold(s) released" if verb == "disable" else ""
    print(f"{account}: {state}{ended}{holds}.")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

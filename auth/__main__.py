"""`python -m auth`: manage password logins.

python -m auth add alice@example.com [--admin] [--password-stdin]
python -m auth passwd alice@example.com [--password-stdin]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from auth import passwords
from settings import get_settings
from storage.engine import create_engine
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
    args = parser.parse_args(argv)

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
            print(f"Password changed for {passwords.normalise(args.identifier)}.")
    finally:
        await engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))

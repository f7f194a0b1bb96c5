"""`python -m storage`: the app's database from the command line.

move-to-postgres [--to URL]   move this SQLite install (ledger, logins, chats, model memory) into
                              a new PostgreSQL database: DATABASE_URL's, or URL. Verifies the ledger
                              on both sides and checks that its root is the same.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from credits.verify import Report, verify
from settings import Settings, get_settings
from storage.ledger import ledger_from_settings
from storage.move import MoveRefused, move


async def verified(settings: Settings) -> Report:
    """The ledger `settings` point at, verified without writing to it."""
    book = ledger_from_settings(settings)
    await book.start(background=False, read_only=True)
    try:
        return await verify(book)
    finally:
        await book.close()


async def move_to_postgres(target: str | None) -> int:
    settings = get_settings()
    if target is not None:
        settings = settings.model_copy(update={"database_url": target, "ledger_database_url": None})
    if not settings.is_postgres:
        print(
            "error: set DATABASE_URL to the new PostgreSQL database (or pass --to)", file=sys.stderr
        )
        return 2
    before = None
    if (settings.data_dir / "ledger.db").exists():
        sqlite = settings.model_copy(update={"database_url": None, "ledger_database_url": None})
        before = await verified(sqlite)
        if not before.ok:
            print(
                f"error: the SQLite ledger does not verify, so it is not moved: {before.summary()}"
            )
            return 1
    try:
        moved = await move(settings.data_dir, settings.db_url, settings.ledger_url)
    except MoveRefused as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    print(moved.summary())
    if before is not None:
        after = await verified(settings)
        print(after.summary())
        if not after.ok or after.root != before.root or after.entries != before.entries:
            print(f"error: the moved ledger differs (root {before.root[:16]} -> {after.root[:16]})")
            return 1
        print(f"the ledger's root is the same on PostgreSQL: {after.root}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m storage", description="The app's database.")
    sub = parser.add_subparsers(dest="command", required=True)
    moving = sub.add_parser("move-to-postgres", help="move this SQLite install to PostgreSQL")
    moving.add_argument("--to", help="the new database (default: DATABASE_URL)")
    args = parser.parse_args(argv)
    return asyncio.run(move_to_postgres(args.to))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

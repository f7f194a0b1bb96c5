"""The proof is pinned: whoever can write the data directory cannot rewrite history and re-sign it.

The careful attacker changes an entry, gives it its true new hash, recomputes every checkpoint and
signs them with a key of their own, puts that key beside the database and rewrites the checkpoint
file. Only the public key pinned at the ledger's first start (or the copy the operator keeps
elsewhere, `verify --public-key`) tells. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from credits import log
from credits.errors import IntegrityError
from credits.store import Ledger
from credits.verify import verify
from settings import ROOT
from tests.credits.conftest import Clock
from tests.credits.test_tampering import _bytes, _entry_6, attack, populate


async def rewrite_and_resign(ledger: Ledger, key: Ed25519PrivateKey) -> None:
    """Entry 6 now says another model; the tree, the checkpoints and the file all agree with it,
    signed by `key`."""
    forged = await _entry_6(ledger, metadata='{"model":"cheap"}')
    leaves = await ledger._read(
        lambda db: [bytes(r[0]) for r in db.all("SELECT leaf_hash FROM ledger_log ORDER BY seq")]
    )
    leaves[5] = log.leaf_hash(forged)
    checkpoints = [
        log.sign(
            key, n, log.root(leaves[:n]), 1_800_000_000_000_000 + n, log.origin_of(ledger.ledger_id)
        )
        for n in (5, 10)
    ]
    frontier: list[bytes] = []
    for i, leaf in enumerate(leaves):
        log.frontier_push(frontier, i, leaf)
    statements = [
        'UPDATE ledger_transfers SET metadata = \'{"model":"cheap"}\' '
        "WHERE transfer_id = 'turn:t1/post'",
        f"UPDATE ledger_log SET leaf_hash = {_bytes(ledger, leaves[5])} WHERE seq = 6",
        "DELETE FROM ledger_checkpoints",
        *(
            "INSERT INTO ledger_checkpoints (size, root, timestamp_us, key_id, signature, origin) "
            f"VALUES ({cp.size}, {_bytes(ledger, cp.root)}, {cp.timestamp_us}, '{cp.key_id}', "
            f"{_bytes(ledger, cp.signature)}, '{cp.origin}')"
            for cp in checkpoints
        ),
        f"UPDATE ledger_log_head SET frontier = '{json.dumps([h.hex() for h in frontier])}'",
    ]
    attack(ledger, *statements)
    ledger.checkpoint_file.write_text("".join(cp.to_json() + "\n" for cp in checkpoints))


async def test_a_history_resigned_with_another_key_fails_verify(
    ledger: Ledger, tmp_path: Path, clock: Clock
) -> None:
    await populate(ledger)
    original = ledger.pinned_key
    theirs = Ed25519PrivateKey.generate()
    await rewrite_and_resign(ledger, theirs)

    # The attacker's own view: with their key pinned, the rewrite is perfect...
    (tmp_path / "attacker").mkdir()
    their_pin = tmp_path / "attacker" / "ledger-public-key"
    forged = Ledger(ledger.url, tmp_path, theirs, clock=clock, pinned_key_file=their_pin)
    await forged.start(background=False, read_only=True)
    try:
        assert (await verify(forged)).ok
        # Their key file in place of the pinned one: the operator's own copy still tells.
        refused = await verify(forged, public_key=original)
        assert not refused.ok and "not by the pinned key" in refused.problems[0]
    finally:
        await forged.close()

    # ...but against the key pinned at first start, or the operator's copy, it fails by name.
    report = await verify(ledger)
    assert not report.ok
    theirs_id = log.key_id(theirs.public_key())
    assert report.problems[0] == (
        f"checkpoint at size 5 is signed by key {theirs_id}, not by the pinned key "
        f"{log.key_id(original)}"
    )


async def test_the_app_refuses_to_sign_with_a_key_that_is_not_pinned(
    ledger: Ledger, tmp_path: Path, clock: Clock
) -> None:
    await ledger.grant("ann", 5_000, "welcome:ann", code="welcome")
    await ledger.close()
    other = Ledger(ledger.url, tmp_path, Ed25519PrivateKey.generate(), clock=clock)
    with pytest.raises(IntegrityError, match="is not the pinned one"):
        await other.start(background=False)
    await other.close()
    await ledger.start(background=False)  # the fixture closes it


async def test_lines_of_another_ledger_in_the_file_are_noted_not_held_against_it(
    ledger: Ledger,
) -> None:
    await populate(ledger)
    stranger = log.sign(ledger.signer.key, 3, b"\x01" * 32, 1, log.origin_of("0123456789abcdef"))
    with ledger.checkpoint_file.open("a") as f:
        f.write(stranger.to_json() + "\n")
    report = await verify(ledger)
    assert report.ok, report.problems
    assert report.notes == [
        "ledger-checkpoints.jsonl also holds checkpoints of another ledger "
        "(creditchat-ledger/v1/0123456789abcdef), left from an earlier install; they were not "
        "checked against this one"
    ]


async def test_a_line_signed_by_another_key_is_named(ledger: Ledger) -> None:
    await populate(ledger)
    other = Ed25519PrivateKey.generate()
    line = log.sign(other, 10, b"\x02" * 32, 5, log.origin_of(ledger.ledger_id))
    with ledger.checkpoint_file.open("a") as f:
        f.write(line.to_json() + "\n")
    report = await verify(ledger)
    assert not report.ok
    assert report.problems[0].startswith(
        "line 3 of ledger-checkpoints.jsonl (checkpoint at size 10)"
    )
    assert f"signed by key {log.key_id(other.public_key())}" in report.problems[0]


def test_verify_public_key_from_the_command_line(tmp_path: Path) -> None:
    """The operator keeps the key `checkpoint` printed; a swapped key file and a re-signed
    ledger do not get past `verify --public-key`."""
    env = {**os.environ, "DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "credits", *args], cwd=ROOT, env=env, capture_output=True,
            text=True,
        )  # fmt: skip

    assert cli("grant", "ann@example.com", "5", "--reason", "r", "--id", "g:1").returncode == 0
    shown = cli("checkpoint")
    key = shown.stdout.split("public key (Ed25519, base64): ")[1].strip()
    assert cli("verify", "--public-key", key).returncode == 0

    # The attacker swaps both key files for their own and re-signs a rewritten history.
    theirs = Ed25519PrivateKey.generate()
    raw = theirs.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    (tmp_path / "ledger-signing.key").write_text(base64.b64encode(raw).decode() + "\n")
    (tmp_path / "ledger-public-key").write_text(log.public_key_b64(theirs.public_key()) + "\n")
    (tmp_path / "ledger-checkpoints.jsonl").write_text("")
    db = sqlite3.connect(tmp_path / "ledger.db")
    for verb in ("update", "delete"):
        db.execute(f"DROP TRIGGER ledger_checkpoints_no_{verb}")
    db.execute("DELETE FROM ledger_checkpoints")
    db.commit()
    db.close()
    assert cli("checkpoint").returncode == 0  # signed with their key now
    assert cli("verify").returncode == 0  # their pinned key: the forgery holds by itself
    refused = cli("verify", "--public-key", key)
    assert refused.returncode == 1
    assert f"not by the pinned key {log.key_id(log.parse_public_key(key))}" in refused.stdout
    assert cli("verify", "--public-key", "not-a-key").returncode == 2


async def test_receipts_only_read(ledger: Ledger) -> None:
    """A receipt press is a person's request: it proves against the checkpoints there are and
    never signs or writes one (the ledger signs on its own schedule)."""
    from credits.errors import NotYetCheckpointed
    from credits.receipts import check_receipt, receipt

    await populate(ledger)  # checkpoints at 5 and 10; entries 11 and 12 are not covered yet

    def counts(db: object) -> tuple[int, int]:
        one = db.one  # type: ignore[attr-defined]
        return one("SELECT count(*) FROM ledger_checkpoints")[0], one(
            "SELECT count(*) FROM ledger_log"
        )[0]

    before = await ledger._read(counts)
    proof = await receipt(ledger, "turn:t1/post")
    assert check_receipt(proof, ledger.pinned_key) and proof["checkpoint"]["size"] == 10
    with pytest.raises(NotYetCheckpointed):
        await receipt(ledger, "turn:t4/post")
    assert await ledger._read(counts) == before
    lines = ledger.checkpoint_file.read_text().splitlines()
    assert len(lines) == 2

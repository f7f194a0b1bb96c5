"""`python -m credits`, as an operator runs it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from credits import log
from credits.receipts import check_receipt
from settings import ROOT


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "credits", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_grant_balance_receipt_verify_and_a_tampered_ledger(tmp_path: Path) -> None:
    granted = cli(tmp_path, "grant", "ann@example.com", "12.5", "--reason", "beta", "--id", "g:1")
    assert granted.returncode == 0, granted.stderr
    assert "granted 12.500 credits" in granted.stdout
    assert (
        cli(
            tmp_path, "grant", "ann@example.com", "12.5", "--reason", "beta", "--id", "g:1"
        ).returncode
        == 0
    )
    balance = cli(tmp_path, "balance", "ann@example.com")
    assert "12.500 available, 0.000 held, 12.500 posted" in balance.stdout

    receipt = json.loads(cli(tmp_path, "receipt", "g:1").stdout)
    key = log.load_or_create_key(tmp_path / "ledger-signing.key").public_key()
    assert check_receipt(receipt, key)
    forged = {**receipt, "entry": receipt["entry"].replace("12500", "99999")}
    assert not check_receipt(forged, key)
    (tmp_path / "receipt.json").write_text(json.dumps(receipt))
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    (tmp_path / "broken.json").write_text("{not json")
    checked = cli(tmp_path, "check-receipt", str(tmp_path / "receipt.json"))
    assert checked.returncode == 0 and "receipt checks: entry 1 of 1" in checked.stdout
    assert cli(tmp_path, "check-receipt", str(tmp_path / "forged.json")).returncode == 1
    assert cli(tmp_path, "check-receipt", str(tmp_path / "broken.json")).returncode == 2

    ok = cli(tmp_path, "verify")
    assert ok.returncode == 0 and ok.stdout.startswith("ledger verified: 1 entries")

    db = sqlite3.connect(tmp_path / "ledger.db")
    db.execute("DROP TRIGGER ledger_transfers_no_update")
    db.execute("UPDATE ledger_transfers SET amount = 99999 WHERE transfer_id = 'g:1'")
    db.commit()
    db.close()
    bad = cli(tmp_path, "verify")
    assert bad.returncode == 1
    assert "log entry 1 (g:1): the transfer does not match its log hash" in bad.stdout


def test_bad_amounts_are_refused(tmp_path: Path) -> None:
    for amount in ("0.0001", "abc"):
        result = cli(tmp_path, "grant", "ann@example.com", amount, "--reason", "x")
        assert result.returncode != 0
    result = cli(tmp_path, "grant", "ann@example.com", "-3", "--reason", "x")
    assert result.returncode == 2 and "must be positive" in result.stderr
    assert "0.000 available" in cli(tmp_path, "balance", "ann@example.com").stdout

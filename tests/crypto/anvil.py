"""anvil, Foundry's local Ethereum node (npm `@foundry-rs/anvil`, pinned in tests/anvil), started
by the tests and the crypto benchmark: a real JSON-RPC node on a loopback port."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from settings import ROOT
from tests.e2e.process import free_port

ANVIL_DIR = ROOT / "tests" / "anvil"
CHAIN_ID = 31337


def ensure_anvil() -> Path:
    """The anvil binary, installed from the npm registry once (`npm ci` in tests/anvil)."""
    binary = ANVIL_DIR / "node_modules" / ".bin" / "anvil"
    if not binary.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed for the anvil tests (Node.js 20 or later)"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ANVIL_DIR, check=True
        )
    return binary


@contextmanager
def running_anvil(chain_id: int = CHAIN_ID, *extra: str) -> Iterator[str]:
    """An anvil node until the block ends; yields its URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [str(ensure_anvil()), "--host", "127.0.0.1", "--port", str(port), "--chain-id",
         str(chain_id), "--silent", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            error = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"anvil exited with {proc.returncode}: {error}")
        try:
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=1) as answer:
                if json.load(answer).get("result"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("anvil did not answer in time")

"""Start and stop the real app process (`chainlit run app.py`), for e2e tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from settings import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_environment(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment the app runs with: this one, minus auth leftovers, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTH_", "CHAINLIT_"))}
    env.update(DATA_DIR=str(data_dir), **overrides)
    return env


@contextmanager
def running_app(
    data_dir: Path,
    script: Path = ROOT / "app.py",
    ready: str = "/healthz",
    port: int | None = None,
    **overrides: str,
) -> Iterator[str]:
    """Run the app (or another Chainlit `script`, from its own folder) on a free loopback port
    (or `port`) until the block ends; yields its base URL once `ready` answers 200."""
    with app_process(data_dir, script, ready, port, **overrides) as (base_url, _):
        yield base_url


@contextmanager
def app_process(
    data_dir: Path,
    script: Path = ROOT / "app.py",
    ready: str = "/healthz",
    port: int | None = None,
    **overrides: str,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`running_app`, also yielding the process (benchmarks read its CPU time)."""
    port = port or free_port()
    log = data_dir / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chainlit", "run", script.name, "--headless",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=script.parent, env=app_environment(data_dir, **overrides),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url + ready, proc, log)
        yield base_url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the app did not become healthy:\n{log.read_text()[-4000:]}")

"""Starts the real app process (chainlit run app.py) once for the end-to-end and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from settings import ROOT
from tests.fakes.openai_server import FakeOpenAI

ADMIN = ("admin@example.com", "admin-password-for-tests")


@dataclass
class RunningApp:
    base_url: str
    data_dir: Path
    fake: FakeOpenAI
    log: Path

    def add_login(self, identifier: str, password: str) -> None:
        """Create a password login the way an operator would, with the CLI."""
        subprocess.run(
            [sys.executable, "-m", "auth", "add", identifier, "--password-stdin"],
            input=password.encode(),
            check=True,
            cwd=ROOT,
            env=app_env(self.data_dir, self.fake),
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_env(data_dir: Path, fake: FakeOpenAI) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTH_", "CHAINLIT_"))}
    env.update(
        DATA_DIR=str(data_dir),
        ADMIN_EMAIL=ADMIN[0],
        ADMIN_PASSWORD=ADMIN[1],
        VLLM_BASE_URL=fake.base_url,
        MODEL_TIMEOUT_S="5",
        LOG_LEVEL="INFO",
    )
    return env


@pytest.fixture(scope="session")
def app() -> Iterator[RunningApp]:
    fake = FakeOpenAI().start()
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-e2e-"))
    port = free_port()
    log = data_dir / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chainlit",
                "run",
                "app.py",
                "--headless",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=app_env(data_dir, fake),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, proc, log)
        yield RunningApp(base_url=base_url, data_dir=data_dir, fake=fake, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        fake.stop()


def wait_ready(base_url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the app did not become healthy:\n{log.read_text()[-4000:]}")

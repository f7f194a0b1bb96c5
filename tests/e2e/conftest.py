"""Starts the real app process (chainlit run app.py) once for the end-to-end and browser tests."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from settings import ROOT
from tests.e2e.process import app_environment, running_app
from tests.fakes.openai_server import FakeOpenAI

ADMIN = ("admin@example.com", "admin-password-for-tests")


@dataclass
class RunningApp:
    base_url: str
    data_dir: Path
    fake: FakeOpenAI

    def add_login(self, identifier: str, password: str) -> None:
        """Create a password login the way an operator would, with the CLI."""
        subprocess.run(
            [sys.executable, "-m", "auth", "add", identifier, "--password-stdin"],
            input=password.encode(),
            check=True,
            cwd=ROOT,
            env=app_environment(self.data_dir),
        )


@pytest.fixture(scope="session")
def app() -> Iterator[RunningApp]:
    fake = FakeOpenAI().start()
    data_dir = Path(tempfile.mkdtemp(prefix="creditchat-e2e-"))
    overrides = dict(
        ADMIN_EMAIL=ADMIN[0],
        ADMIN_PASSWORD=ADMIN[1],
        VLLM_BASE_URL=fake.base_url,
        MODEL_TIMEOUT_S="5",
        LOG_LEVEL="INFO",
    )
    try:
        with running_app(data_dir, **overrides) as base_url:
            yield RunningApp(base_url=base_url, data_dir=data_dir, fake=fake)
    finally:
        fake.stop()

"""In CI a missing PostgreSQL server fails the run; a developer's local run skips and says so."""

from __future__ import annotations

import os
import subprocess
import sys

from settings import ROOT
from tests.e2e.process import free_port

ONE_POSTGRES_TEST = "tests/credits/test_stories.py::test_a_released_hold_charges_nothing[postgres]"


def run_without_postgres(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["TEST_POSTGRES_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test"
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", ONE_POSTGRES_TEST],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_ci_fails_when_no_postgres_server_answers() -> None:
    result = run_without_postgres(ci=True)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "CI runs every PostgreSQL test, but no PostgreSQL server answers" in result.stdout


def test_a_local_run_skips_and_says_why() -> None:
    result = run_without_postgres(ci=False)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 skipped" in result.stdout

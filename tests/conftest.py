"""Test configuration: an isolated data directory, and the databases integration tests run on."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_DATA = tempfile.mkdtemp(prefix="creditchat-tests-")
os.environ["DATA_DIR"] = _DATA
for name in list(os.environ):
    # Provider keys from the developer's shell must not leak into tests.
    if name.endswith("_API_KEY") or name.endswith("_BASE_URL") or name == "DATABASE_URL":
        del os.environ[name]

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    import socket

    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=2):
            return None
    except OSError as exc:
        return f"no PostgreSQL server answers at {url.host}:{url.port} ({exc})"


@pytest.fixture(scope="session")
def data_dir() -> str:
    return _DATA


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new, empty database on the test PostgreSQL server, dropped afterwards."""
    yield from _fresh_postgres()


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """As `fresh_postgres_url`, shared by one module's tests (an app process uses it)."""
    yield from _fresh_postgres()


def _fresh_postgres() -> Iterator[str]:
    reason = postgres_available()
    if reason:
        if os.environ.get("CI"):  # CI must test pg.sql and the PostgreSQL paths: never skip there
            pytest.fail(f"CI runs every PostgreSQL test, but {reason}", pytrace=False)
        pytest.skip(f"{reason} (a local run skips; CI fails)")
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each persistence test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("LOG_LEVEL", "WARNING")

"""Settings: defaults, environment overrides, and a configuration reference that stays complete."""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from agents.catalog import load_catalog
from auth.providers import parse_oidc_list
from settings import ROOT, Settings


def documented_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s?([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def test_every_setting_is_documented_in_env_example() -> None:
    missing = {name.upper() for name in Settings.model_fields} - documented_names()
    assert not missing, f".env.example does not document: {sorted(missing)}"


def test_every_variable_the_catalogue_reads_is_documented() -> None:
    catalogue = tomllib.loads((ROOT / "models.toml").read_text())
    named = {
        value
        for provider in catalogue["providers"].values()
        for key, value in provider.items()
        if key.endswith("_env")
    }
    assert named, "models.toml names no environment variables; this test would check nothing"
    assert named <= documented_names(), sorted(named - documented_names())


def test_env_example_documents_nothing_that_does_not_exist() -> None:
    catalogue = tomllib.loads((ROOT / "models.toml").read_text())
    known = {name.upper() for name in Settings.model_fields}
    known |= {
        v for p in catalogue["providers"].values() for k, v in p.items() if k.endswith("_env")
    }
    # Each OpenID Connect provider named in the example's OIDC_PROVIDERS has variables of its own.
    example = re.search(r"^#?\s?OIDC_PROVIDERS=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    assert example, "the example names no OIDC provider"
    for name, _ in parse_oidc_list(example.group(1)):
        known |= {f"OIDC_{name.upper()}_{part}" for part in ("CLIENT_ID", "CLIENT_SECRET", "LABEL")}
    assert documented_names() - known == set()


def test_defaults_give_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert s.db_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'app.db'}"
    assert not s.is_postgres
    assert s.max_message_chars == 16_000
    assert s.credit_usd == Decimal("0.024")


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@h/db")
    monkeypatch.setenv("MAX_MESSAGE_CHARS", "42")
    s = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    assert s.is_postgres and s.max_message_chars == 42


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_MESSAGE_CHARS", "0")
    with pytest.raises(ValueError, match="max_message_chars"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_auth_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    first = s.auth_secret()
    assert len(first) >= 40
    assert s.auth_secret() == first
    assert (tmp_path / "auth-secret").stat().st_mode & 0o077 == 0


def test_provider_secret_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_PROVIDER_KEY", "sk-test")
    assert Settings(_env_file=None).provider_secret("SOME_PROVIDER_KEY") == "sk-test"  # type: ignore[call-arg]
    assert Settings(_env_file=None).provider_secret("NOT_SET_ANYWHERE_KEY") is None  # type: ignore[call-arg]


def test_chainlits_ci_placeholder_key_enables_no_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """`chainlit run` with CI set puts a fake OPENAI_API_KEY in the environment before the app
    loads: OpenAI's models (chat and images) appeared in every CI run, answering nothing."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-FAKE-OPENAI-API-KEY")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.provider_secret("OPENAI_API_KEY") is None
    catalog = load_catalog(settings.models_file, settings.provider_secret, "smollm2-135m")
    assert [m.id for m in catalog.enabled("chat")] == ["smollm2-135m"]
    assert catalog.enabled("image") == []

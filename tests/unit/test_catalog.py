"""The model catalogue: what is offered, what is hidden, and what a malformed file says."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.catalog import AUTO, load_catalog
from agents.errors import CatalogError, ModelNotAvailable
from settings import ROOT

CATALOGUE = ROOT / "models.toml"


def no_env(_: str) -> str | None:
    return None


def test_shipped_catalogue_offers_only_the_local_model_without_keys() -> None:
    catalog = load_catalog(CATALOGUE, no_env, "smollm2-135m")
    assert [m.id for m in catalog.enabled("chat")] == ["smollm2-135m"]
    hidden = catalog.models["llama-3.1-8b"]
    assert not hidden.enabled
    with pytest.raises(ModelNotAvailable, match="NEBIUS_API_KEY"):
        catalog.get("llama-3.1-8b")


def test_shipped_catalogue_names_the_mission_text_models() -> None:
    catalog = load_catalog(CATALOGUE, no_env, "smollm2-135m")
    names = {m.name for m in catalog.models.values() if m.can("chat")}
    assert {"meta-llama/Meta-Llama-3.1-8B-Instruct", "google/gemma-2-2b-it"} <= names
    for model in catalog.models.values():
        assert model.context_length > 0
        assert model.input_usd_per_mtok >= 0 and model.output_usd_per_mtok >= 0


def test_a_key_enables_the_provider_and_auto_picks_the_cheapest() -> None:
    env = {"NEBIUS_API_KEY": "k"}
    catalog = load_catalog(CATALOGUE, env.get, "smollm2-135m")
    assert catalog.get("llama-3.1-8b").provider.api_key == "k"
    assert catalog.choose(AUTO).id in {"llama-3.1-8b", "gemma-2-2b"}
    assert catalog.choose(AUTO, "vision").id == "nemotron-nano-v2-12b"
    assert catalog.choose(None).id == "smollm2-135m"


def test_base_url_from_environment_enables_a_self_hosted_server() -> None:
    catalog = load_catalog(
        CATALOGUE, {"VLLM_BASE_URL": "http://127.0.0.1:9/v1"}.get, "smollm2-135m"
    )
    model = catalog.get("vllm-llama-3.1-8b")
    assert model.provider.base_url == "http://127.0.0.1:9/v1"


def test_a_model_that_cannot_chat_is_refused_for_chat() -> None:
    catalog = load_catalog(CATALOGUE, {"NEBIUS_API_KEY": "k"}.get, "smollm2-135m")
    with pytest.raises(ModelNotAvailable, match="cannot do 'chat'"):
        catalog.choose("flux-schnell")


BASE = '[providers.p]\nkind = "openai"\nbase_url = "http://x"\napi_key_optional = true\n'
MODEL = 'id = "m"\nprovider = "p"\ncapabilities = ["chat"]\ncontext_length = 100\n'


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (MODEL + 'input_usd_per_mtok = 0.1\noutput_usd_per_mtok = "1"\n', "quoted decimal"),
        (MODEL + 'input_usd_per_mtok = "-1"\noutput_usd_per_mtok = "1"\n', "zero or more"),
        (MODEL + 'input_usd_per_mtok = "x"\noutput_usd_per_mtok = "1"\n', "not a number"),
        (MODEL.replace('"chat"', '"telepathy"') + 'input_usd_per_mtok = "1"\n', "capabilities"),
        (MODEL.replace('"p"', '"nope"'), "unknown provider"),
        (MODEL.replace("100", "0"), "context_length"),
    ],
)
def test_malformed_catalogues_say_what_is_wrong(tmp_path: Path, models: str, message: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(BASE + "[[models]]\n" + models)
    with pytest.raises(CatalogError, match=message):
        load_catalog(path, no_env, "m")


def test_duplicate_ids_and_missing_default_are_refused(tmp_path: Path) -> None:
    entry = "[[models]]\n" + MODEL + 'input_usd_per_mtok = "1"\noutput_usd_per_mtok = "1"\n'
    path = tmp_path / "models.toml"
    path.write_text(BASE + entry + entry)
    with pytest.raises(CatalogError, match="twice"):
        load_catalog(path, no_env, "m")
    path.write_text(BASE + entry)
    with pytest.raises(CatalogError, match="DEFAULT_MODEL"):
        load_catalog(path, no_env, "other")


def test_unreadable_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text("this is [not toml")
    with pytest.raises(CatalogError, match="Cannot read"):
        load_catalog(path, no_env, "m")


def test_work_priced_in_the_catalogue_and_what_it_costs(tmp_path: Path) -> None:
    """A kind of work priced by its own entry ([work.<kind>]); one not priced is not offered."""
    from decimal import Decimal

    from agents.prices import Pricing

    entry = "[[models]]\n" + MODEL + 'input_usd_per_mtok = "1"\noutput_usd_per_mtok = "1"\n'
    work = '[work.lookup]\nlabel = "Lookup"\ncall_usd = "0.0012"\ninput_usd_per_mtok = "2"\n'
    path = tmp_path / "models.toml"
    path.write_text(BASE + entry + work)
    price = load_catalog(path, no_env, "m").price_of("lookup")
    assert (price.label, price.call_usd, price.output_usd_per_mtok) == (
        "Lookup",
        Decimal("0.0012"),
        Decimal(0),
    )
    pricing = Pricing(credit_usd=Decimal("0.024"))
    # 3 calls ($0.0036) reading 1,200 tokens ($0.0024): $0.006 = 0.25 credits = 250 units.
    assert pricing.work(price, tokens_in=1200, calls=3) == 250
    assert pricing.work(price, tokens_in=1) == 1  # a part of a unit is a whole unit
    with pytest.raises(ModelNotAvailable, match="does not price 'images'"):
        load_catalog(path, no_env, "m").price_of("images")


@pytest.mark.parametrize(
    ("work", "message"),
    [
        ('[work.x]\nlabel = "X"\n', "names no price"),
        ("[work.x]\ncall_usd = 0.5\n", "quoted decimal"),
        ('[work.x]\ncalls_usd = "0.5"\n', "unknown keys"),
        ('[work.x]\ninput_usd_per_mtok = "-2"\n', "Work 'x': input_usd_per_mtok must be zero"),
    ],
)
def test_malformed_work_prices_say_what_is_wrong(tmp_path: Path, work: str, message: str) -> None:
    entry = "[[models]]\n" + MODEL + 'input_usd_per_mtok = "1"\noutput_usd_per_mtok = "1"\n'
    path = tmp_path / "models.toml"
    path.write_text(BASE + entry + work)
    with pytest.raises(CatalogError, match=message):
        load_catalog(path, no_env, "m")

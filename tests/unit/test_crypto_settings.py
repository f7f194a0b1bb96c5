"""Crypto top-ups are configured all or nothing: the settings that are there must make a whole
chain, or the app refuses to start, saying what is missing or wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from payments import configured
from settings import Settings

ADDRESS = "0x" + "ab" * 20
TOKEN = "0x" + "cd" * 20


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_without_crypto_settings_nothing_is_offered() -> None:
    assert configured.crypto(settings()) is None


def test_some_settings_without_the_rest_are_refused() -> None:
    with pytest.raises(ValueError, match="CRYPTO_CHAIN_ID, CRYPTO_RECEIVING_ADDRESS"):
        configured.crypto(settings(crypto_rpc_url="http://node"))
    with pytest.raises(ValueError, match="CRYPTO_TOKEN_ADDRESS, or a price"):
        configured.crypto(
            settings(
                crypto_rpc_url="http://node", crypto_chain_id=1, crypto_receiving_address=ADDRESS
            )
        )


def test_addresses_are_checked() -> None:
    with pytest.raises(ValueError, match="CRYPTO_RECEIVING_ADDRESS is not an Ethereum address"):
        configured.crypto(
            settings(
                crypto_rpc_url="http://node",
                crypto_chain_id=1,
                crypto_receiving_address="0x12",
                crypto_token_address=TOKEN,
            )
        )


def test_packs_in_another_currency_than_the_stablecoins_are_refused(tmp_path: Path) -> None:
    packs = tmp_path / "packs.toml"
    packs.write_text('currency = "eur"\n[packs.s]\nlabel = "S"\nprice = "5.00"\ncredits = 500\n')
    with pytest.raises(ValueError, match=r"packs\.toml is priced in EUR"):
        configured.crypto(
            settings(
                crypto_rpc_url="http://node",
                crypto_chain_id=1,
                packs_file=packs,
                crypto_receiving_address=ADDRESS,
                crypto_token_address=TOKEN,
            )
        )


def test_a_whole_chain_is_configured() -> None:
    config = configured.crypto(
        settings(
            crypto_rpc_url="http://node",
            crypto_chain_id=8453,
            crypto_chain_name="Base",
            crypto_receiving_address=ADDRESS.upper().replace("0X", "0x"),
            crypto_token_address=TOKEN,
            crypto_native_rate="3000",
        )
    )
    assert config is not None
    assert (config.chain_id, config.recipient, config.currency) == (8453, ADDRESS, "usd")
    assert set(config.assets) == {"token", "native"}
    assert config.token is not None and config.token.token == TOKEN

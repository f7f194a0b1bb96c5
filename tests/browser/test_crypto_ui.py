"""A person pays for credits in crypto in a real browser: the page has a browser wallet (an
EIP-1193 `window.ethereum`, injected by Playwright's init script, whose key is a test key held by
the test), binds it by Sign-In with Ethereum from the chat, pays a pack in the stablecoin from it
on anvil, and sees the badge move once the confirmations are mined."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import signed_in
from tests.crypto.anvil import CHAIN_ID
from tests.crypto.evm import Person
from tests.e2e.conftest import ChainShop, new_user

pytestmark = pytest.mark.browser
TIMEOUT = 60_000

WALLET = """
window.ethereum = {
  isTestWallet: true,
  request: ({ method, params }) => window.__wallet(method, params || []),
};
"""


async def with_wallet(browser: Browser, shop: ChainShop, wallet: Person) -> Page:
    """A signed-in page whose browser wallet signs and sends with `wallet`'s key."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    asked: list[str] = []

    async def answer(method: str, params: list[Any]) -> Any:
        asked.append(method)
        if method in ("eth_requestAccounts", "eth_accounts"):
            return [wallet.address]
        if method == "eth_chainId":
            return hex(CHAIN_ID)
        if method == "personal_sign":
            text = bytes.fromhex(params[0].removeprefix("0x")).decode()
            assert params[1] == wallet.address
            return wallet.sign(text)
        if method == "eth_sendTransaction":
            [tx] = params
            sent = {"to": tx["to"], "data": tx.get("data") or "0x", "value": int(tx["value"], 16)}
            return await shop.evm.signed(wallet, sent)
        raise ValueError(f"the test wallet does not do {method}")

    await context.expose_function("__wallet", answer)
    await context.add_init_script(WALLET)
    user, password = await new_user(shop)  # type: ignore[arg-type]
    return await signed_in(context, shop.base_url, user, password)


async def test_bind_a_wallet_and_pay_in_the_stablecoin_in_the_browser(
    browser: Browser, chain_shop: ChainShop
) -> None:
    wallet = await chain_shop.evm.person()
    await chain_shop.evm.mint(chain_shop.token, wallet.address, 100_000_000)
    page = await with_wallet(browser, chain_shop, wallet)
    pack = "Starter · 5.00 USD · USDC on Anvil"
    await page.click("#credit-badge-buy")
    await page.get_by_role("button", name=pack).last.click()
    await expect(page.get_by_text("First bind the wallet you will pay from")).to_be_visible(
        timeout=TIMEOUT
    )
    await page.locator("#wallet-connect-browser").last.click()
    await expect(page.locator("#wallet-connect-status").last).to_have_text(
        f"Wallet {wallet.address} is bound to your account.", timeout=TIMEOUT
    )
    await page.get_by_role("button", name=pack).last.click()
    await expect(page.get_by_text("Send exactly").last).to_be_visible(timeout=TIMEOUT)
    await page.locator("#crypto-pay-browser").last.click()
    await expect(page.locator("#crypto-pay-status").last).to_contain_text(
        "Sent: 0x", timeout=TIMEOUT
    )
    await expect(page.get_by_text("Payment seen").last).to_be_visible(timeout=TIMEOUT)
    await expect(page.locator("#credit-badge-amount")).to_have_text("1,000 credits")
    await chain_shop.evm.mine(2)
    await expect(page.locator("#credit-badge-amount")).to_have_text("1,500 credits", timeout=10_000)
    await expect(page.get_by_text("were added to your balance").last).to_be_visible()
    await page.context.close()

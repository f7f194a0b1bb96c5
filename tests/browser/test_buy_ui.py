"""A person buys credits in a browser: the Buy button on the badge, a pack's button, the provider's
page opened in a new tab (the loopback Stripe and PayPal), paid there; back in the chat the badge
moves without a reload."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import signed_in as sign_in
from tests.e2e.conftest import Shop, new_user

pytestmark = pytest.mark.browser
TIMEOUT = 60_000


async def signed_in(browser: Browser, shop: Shop) -> Page:
    user, password = await new_user(shop)
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    return await sign_in(context, shop.base_url, user, password)


async def pay(page: Page, pack_button: str, pay_button: str) -> Page:
    """Buy from the badge, open the provider's page from the chat, pay there: the return page."""
    await page.click("#credit-badge-buy")
    await page.get_by_role("button", name=pack_button).click()
    link = page.get_by_role("link", name="Pay with")
    await expect(link).to_be_visible(timeout=TIMEOUT)
    async with page.context.expect_page() as opened:
        await link.click()
    provider = await opened.value
    await provider.click(pay_button)
    await expect(provider.locator("#message")).to_contain_text("Payment received", timeout=TIMEOUT)
    return provider


async def test_buy_credits_with_stripe_in_the_browser(browser: Browser, shop: Shop) -> None:
    page = await signed_in(browser, shop)
    back = await pay(page, "Starter · 5.00 USD · Card (Stripe)", "#pay-card")
    await expect(back.locator("#message")).to_contain_text("500 credits are on your balance")
    await expect(page.locator("#credit-badge-amount")).to_have_text("1,500 credits", timeout=10_000)
    await expect(page.get_by_text("were added to your balance")).to_be_visible(timeout=10_000)
    await page.context.close()


async def test_buy_credits_with_paypal_in_the_browser(browser: Browser, shop: Shop) -> None:
    page = await signed_in(browser, shop)
    await pay(page, "Standard · 20.00 USD · PayPal", "#pay-paypal")
    await expect(page.locator("#credit-badge-amount")).to_have_text("3,200 credits", timeout=10_000)
    await page.goto(f"{shop.base_url}/billing")
    await expect(page.locator("#purchases .status")).to_have_text(["paid"])
    await page.context.close()

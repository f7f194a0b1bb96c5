"""A person in a browser signs up with their organisation's OpenID Connect provider from the login
page's button, gets the welcome bonus once, signs out, and signs in again."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.test_sign_in import Site, site  # noqa: F401  (the app with its providers)

pytestmark = pytest.mark.browser
TIMEOUT = 60_000


async def through_acme(page: Page, login: str) -> None:
    """Press the Acme button and do what the provider's pages ask (sign in, consent), as far as
    they ask: a provider that remembers the person asks nothing."""
    await page.get_by_role("button", name=re.compile("Acme")).click()
    chat, form = page.locator("#chat-input"), page.locator("input[name=login]")
    await expect(chat.or_(form)).to_be_visible(timeout=TIMEOUT)
    if await form.is_visible():
        await form.fill(login)
        await page.fill("input[name=password]", "any-password")
        await page.get_by_role("button", name="Sign-in").click()
        consent = page.get_by_role("button", name="Continue")
        await expect(chat.or_(consent)).to_be_visible(timeout=TIMEOUT)
        if await consent.is_visible():
            await consent.click()
    await expect(chat).to_be_visible(timeout=TIMEOUT)


async def test_sign_up_with_a_provider_sign_out_and_sign_in_again(
    browser: Browser,
    site: Site,  # noqa: F811
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(site.base_url)
    await through_acme(page, "bea")
    notices = page.locator('[data-step-type="assistant_message"]')
    await expect(notices.first).to_contain_text("1,000", timeout=TIMEOUT)  # the welcome bonus

    await page.locator("#user-nav-button").click()
    await page.get_by_text("Logout").click()
    await expect(page.get_by_role("button", name=re.compile("Acme"))).to_be_visible(timeout=TIMEOUT)

    await through_acme(page, "bea")
    await expect(notices.first).to_contain_text("You have", timeout=TIMEOUT)
    await expect(notices.first).not_to_contain_text("been given")  # no second bonus
    user = await (await context.request.get(f"{site.base_url}/user")).json()
    assert user["identifier"] == "acme:bea"
    await context.close()

"""Headless Debian Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.e2e.conftest import anvil, app, chain_shop, shop, studio, tasker  # noqa: F401  (the apps)

CHROMIUM = Path("/usr/bin/chromium")
HAS_CHROMIUM = CHROMIUM.exists()
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not HAS_CHROMIUM:
        pytest.skip("Debian's chromium is not installed: run scripts/ensure-chromium")
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        await chromium.close()


async def signed_in(context: BrowserContext, base_url: str, user: str, password: str) -> Page:
    """A page of `context` where `user` signed in with the password form, their chat open with
    the welcome bonus on the badge."""
    page = await context.new_page()
    await page.goto(base_url)
    await page.fill("#email", user)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    await expect(page.locator("#credit-badge-amount")).to_have_text("1,000 credits", timeout=60_000)
    return page

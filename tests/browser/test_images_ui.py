"""A person in headless Chromium asks for an image, confirms, watches it come, opens it, reloads
and finds it again; then uploads a photo and gets an answer about it."""

from __future__ import annotations

import asyncio
import io
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import signed_in
from tests.e2e.conftest import Studio, new_user

pytestmark = pytest.mark.browser
TIMEOUT = 60_000


async def type_and_send(page: Page, text: str) -> None:
    await expect(page.locator("#chat-settings-open-modal")).to_be_visible(timeout=TIMEOUT)
    box = page.locator("#chat-input")
    for _ in range(3):  # keys typed while the page re-renders are lost: type again, as a person
        await box.click()
        await page.keyboard.press("ControlOrMeta+a")
        await page.keyboard.type(text)
        if (await box.inner_text()).strip() == text:
            break
    await page.keyboard.press("Enter")


def ask_before_everything(data_dir: Path, user: str) -> None:
    """The person's "ask me above" set to 0 credits, as the settings panel keeps it."""
    with sqlite3.connect(data_dir / "app.db") as db:
        db.execute(
            "INSERT INTO image_choices (identifier, size, steps, ask_above, updated_at) "
            "VALUES (?, '512x512', 8, 0, ?)",
            (user, datetime.now(UTC).isoformat(" ")),
        )


async def test_ask_confirm_watch_open_reload_and_ask_about_a_photo(
    browser: Browser, studio: Studio
) -> None:
    user, password = await new_user(studio)  # type: ignore[arg-type]
    await asyncio.to_thread(ask_before_everything, studio.data_dir, user)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await signed_in(context, studio.base_url, user, password)
    studio.fake.step_s = 0.3  # 8 steps: about 2.4 seconds to watch
    try:
        await type_and_send(page, "draw a lighthouse at dusk")
        confirm = page.get_by_role("button", name="Confirm")
        await expect(confirm).to_be_visible(timeout=TIMEOUT)
        await expect(page.get_by_text("Make this image?")).to_be_visible()
        await confirm.click()
        bar = page.locator("#image-progress")
        await expect(bar).to_be_visible(timeout=TIMEOUT)
        first = int(await bar.get_attribute("data-percent") or 0)
        await expect(bar).not_to_have_attribute("data-percent", str(first), timeout=TIMEOUT)
    finally:
        studio.fake.step_s = 0.0
    thumb = page.locator('a img[src*="/images/"][src$="/thumb"]')
    await expect(thumb).to_be_visible(timeout=TIMEOUT)
    assert await thumb.evaluate("img => img.complete && img.naturalWidth > 0")
    async with context.expect_page() as opened:
        await thumb.click()
    full = await opened.value
    await full.wait_for_load_state()
    assert re.search(r"/images/[\w-]+$", full.url)
    shown = await full.evaluate(
        "() => [document.images[0].naturalWidth, document.images[0].naturalHeight]"
    )
    assert shown == [512, 512]
    await full.close()

    await expect(page).to_have_url(re.compile(r"/thread/[0-9a-f-]{36}$"), timeout=TIMEOUT)
    await page.reload()
    again = page.locator('a img[src*="/images/"][src$="/thumb"]')
    await expect(again).to_be_visible(timeout=TIMEOUT)
    assert await again.evaluate("img => img.complete && img.naturalWidth > 0")

    photo = io.BytesIO()
    Image.new("RGB", (1600, 1200), (30, 170, 60)).save(photo, "JPEG")
    await expect(page.locator("#chat-settings-open-modal")).to_be_visible(timeout=TIMEOUT)
    await page.locator("#upload-button-input").set_input_files(
        files=[{"name": "field.jpg", "mimeType": "image/jpeg", "buffer": photo.getvalue()}]
    )
    await type_and_send(page, "What colour is this?")
    await expect(page.get_by_text(re.compile("dominant colour is green"))).to_be_visible(
        timeout=TIMEOUT
    )
    await page.screenshot(path=str(studio.data_dir / "browser-images.png"))
    await context.close()

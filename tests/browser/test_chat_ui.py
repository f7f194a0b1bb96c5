"""A person in a browser: log in, chat, reload, reopen the thread from the sidebar, continue."""

from __future__ import annotations

import asyncio
import re

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import ADMIN, RunningApp

pytestmark = pytest.mark.browser
TIMEOUT = 60_000


async def send(page: Page, text: str) -> None:
    # The settings button appears once the socket is up and on_chat_start/resume has run; the
    # badge comes last (after the welcome notice): only then are the answers so far all shown.
    await expect(page.locator("#chat-settings-open-modal")).to_be_visible(timeout=TIMEOUT)
    await expect(page.locator("#credit-badge")).to_be_visible(timeout=TIMEOUT)
    before = await page.locator('[data-step-type="assistant_message"]').count()
    box = page.locator("#chat-input")
    for _ in range(3):  # keys typed while the page re-renders (chat start's last messages) are
        await box.click()  # lost: read the composer back and type again, as a person would
        await page.keyboard.press("ControlOrMeta+a")
        await page.keyboard.type(text)
        if (await box.inner_text()).strip() == text:
            break
    await page.keyboard.press("Enter")
    answers = page.locator('[data-step-type="assistant_message"]')
    await expect(answers).to_have_count(before + 1, timeout=TIMEOUT)
    await expect(page.locator("#stop-button")).to_have_count(0, timeout=TIMEOUT)  # task ended


async def test_log_in_chat_reload_reopen_and_continue(browser: Browser, app: RunningApp) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(app.base_url)

    await page.fill("#email", ADMIN[0])
    await page.fill("#password", "not the password")
    await page.click("button[type=submit]")
    await expect(page.locator("#chat-input")).to_have_count(0)  # refused: still on the login form

    await page.fill("#password", ADMIN[1])
    await page.click("button[type=submit]")
    await expect(page.locator("#chat-input")).to_be_visible(timeout=TIMEOUT)

    question = "Name one colour of the rainbow."
    await send(page, question)
    await expect(page.locator('[data-step-type="user_message"]')).to_contain_text(question)
    # The last message is the answer (the first is the balance notice, not kept with the thread).
    first_answer = await page.locator('[data-step-type="assistant_message"]').last.inner_text()
    assert first_answer.strip()
    await page.get_by_text("Used SmolLM2 135M (local)").click()
    await expect(page.locator('[data-step-type="llm"]')).to_contain_text(
        re.compile(r"tokens in · \d+ tokens out"), timeout=TIMEOUT
    )
    await expect(page).to_have_url(re.compile(r"/thread/[0-9a-f-]{36}$"), timeout=TIMEOUT)
    thread_path = re.sub(r"^https?://[^/]+", "", page.url)

    await page.reload()
    await page.goto(app.base_url)  # a new chat: the old one is only in the sidebar now
    await expect(page.locator('[data-step-type="user_message"]')).to_have_count(0)
    await page.locator(f'a[href="{thread_path}"]').click()
    await expect(page.locator('[data-step-type="user_message"]').first).to_contain_text(
        question, timeout=TIMEOUT
    )
    await expect(page.locator('[data-step-type="assistant_message"]').first).to_have_text(
        first_answer.strip(), timeout=TIMEOUT
    )
    # The balance shows in the reopened thread too (not only in the chat it was first sent to).
    await expect(page.locator("#credit-badge")).to_contain_text("credits", timeout=TIMEOUT)

    await send(page, "And another one?")
    await expect(page.locator('[data-step-type="user_message"]')).to_have_count(2)
    await expect(page.locator('[data-step-type="assistant_message"]')).to_have_count(2)
    await page.screenshot(path=str(app.data_dir / "browser-final.png"))
    await context.close()


async def new_person(browser: Browser, app: RunningApp, user: str) -> tuple[BrowserContext, Page]:
    """A login made by the operator's CLI, signed in from a fresh browser."""
    password = "a-long-enough-password"
    await asyncio.to_thread(app.add_login, user, password)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(app.base_url)
    await page.fill("#email", user)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    return context, page


async def test_the_badge_shows_the_balance_and_moves_after_an_answer(
    browser: Browser, app: RunningApp
) -> None:
    context, page = await new_person(browser, app, "browser-badge@example.com")

    badge = page.locator("#credit-badge")
    await expect(badge).to_have_text("1,000 credits", timeout=TIMEOUT)
    await expect(page.get_by_text("You have been given 1,000 credits")).to_be_visible()
    await send(page, "Say hello.")
    # Charged and shown without a reload: a fraction of a credit for the bundled model.
    await expect(badge).to_have_text(re.compile(r"^999\.\d{3} credits$"), timeout=TIMEOUT)
    await page.get_by_text("Used SmolLM2 135M (local)").click()
    step = page.locator('[data-step-type="llm"]')
    await expect(step).to_contain_text(re.compile(r"cost 0\.\d{3} credits"), timeout=TIMEOUT)
    spent = 1000 - float((await badge.inner_text()).split()[0])
    shown = float(re.search(r"cost (0\.\d{3}) credits", await step.inner_text())[1])  # type: ignore[index]
    assert abs(spent - shown) < 1e-9
    await page.screenshot(path=str(app.data_dir / "browser-badge.png"))
    await context.close()


async def test_usage_from_the_command_menu_shows_the_table_chart_and_a_receipt(
    browser: Browser, app: RunningApp
) -> None:
    context, page = await new_person(browser, app, "browser-usage@example.com")
    await send(page, "Say hello.")
    await expect(page.locator("#credit-badge")).to_have_text(
        re.compile(r"^999\.\d{3} credits$"), timeout=TIMEOUT
    )

    await page.locator("#chat-input").click()
    await page.keyboard.type("/usage")
    await page.keyboard.press("Enter")  # picks the command from the menu
    await page.keyboard.press("Enter")  # sends it
    await expect(page.get_by_text("Spent by day, kind of work and model")).to_be_visible(
        timeout=TIMEOUT
    )
    await expect(page.locator(".js-plotly-plot")).to_have_count(1, timeout=TIMEOUT)
    await expect(page.get_by_role("cell", name="SmolLM2 135M (local)", exact=True)).to_be_visible()
    await page.get_by_role("button", name="Receipt #3").click()  # the welcome bonus
    await expect(page.get_by_text(re.compile(r"Receipt for `?welcome:"))).to_be_visible(
        timeout=TIMEOUT
    )
    await expect(page.get_by_text("checks.", exact=False)).to_be_visible()
    await page.screenshot(path=str(app.data_dir / "browser-usage.png"), full_page=True)
    await context.close()

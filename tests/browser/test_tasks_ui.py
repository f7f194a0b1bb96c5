"""A person in headless Chromium starts a task, watches its steps and tool calls come, reloads
the page mid-task and finds it going on, then reads its answer."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from tests.browser.conftest import signed_in
from tests.browser.test_images_ui import type_and_send
from tests.e2e.conftest import Tasker, new_user
from tests.fakes.openai_server import tool_call

pytestmark = pytest.mark.browser
TIMEOUT = 60_000


async def test_start_watch_reload_and_read_a_task(browser: Browser, tasker: Tasker) -> None:
    user, password = await new_user(tasker)  # type: ignore[arg-type]
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await signed_in(context, tasker.base_url, user, password)
    tasker.fake.script = [
        {"content": "1. Multiply\n2. Check with Python"},
        tool_call("calculator", expression="6 * 7"), {"content": "Six times seven is 42."},
        tool_call("run_python", code="print(6 * 7)"), {"content": "Python agrees: 42."},
        {"content": "The answer is 42, checked twice."},
    ]  # fmt: skip
    try:
        with tasker.fake.behaving(delay_s=0.8):
            await type_and_send(page, "/task What is six times seven? Check it.")
            start = page.get_by_role("button", name="Start")
            await expect(page.get_by_text("Start this task?")).to_be_visible(timeout=TIMEOUT)
            await start.click()
            await expect(page.get_by_text("Step 1: Multiply")).to_be_visible(timeout=TIMEOUT)
            await expect(page.get_by_role("button", name="Cancel task")).to_be_visible()
            await expect(page.get_by_text(re.compile(r"running · step \d of 2"))).to_be_visible(
                timeout=TIMEOUT
            )
            await page.reload()  # mid-task
            await expect(page.get_by_text("Step 1: Multiply")).to_be_visible(timeout=TIMEOUT)
            await expect(page.get_by_text("The answer is 42, checked twice.")).to_be_visible(
                timeout=TIMEOUT
            )
        await expect(page.get_by_text("✓ Step 2: Check with Python")).to_be_visible()
        await expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
        await page.get_by_text("✓ Step 2: Check with Python").click()  # open it: its tool call
        await expect(page.get_by_text("run_python").first).to_be_visible(timeout=TIMEOUT)
        await page.screenshot(path=str(tasker.data_dir / "task.png"), full_page=True)
    finally:
        await context.close()

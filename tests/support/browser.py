"""Headless Debian Chromium (Playwright) for the page tests."""

from __future__ import annotations

import contextlib

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required", "--mute-audio"]


@contextlib.asynccontextmanager
async def chromium():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 760}, accept_downloads=True)
            context.set_default_timeout(15_000)
            yield await context.new_page()
        finally:
            await browser.close()

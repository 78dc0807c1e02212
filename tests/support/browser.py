"""A real browser for the tests of pages people use: Debian's headless Chromium (`apt-get install
chromium`) driven by Playwright. Playwright's own browser downloads are never used."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser) -> Page:
    """A page in a context of its own (its own cookies: one person)."""
    return browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()


@contextmanager
def screenshot_on_failure(page: Page, path: Path) -> Iterator[None]:
    """A failure names a screenshot of what the page showed then."""
    try:
        yield
    except (Exception, pytest.fail.Exception) as exc:
        page.screenshot(path=path, full_page=True)
        pytest.fail(f"{exc}\nscreenshot of the page: {path}")

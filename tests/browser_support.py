"""What the Chromium tests of pages share: a page that records the errors it shows."""

from __future__ import annotations

from playwright.async_api import Browser, ConsoleMessage, Page


def console_error(message: ConsoleMessage) -> bool:
    """An error the page logged, except the browser's own favicon request (no site has to have one)."""
    return message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico")


async def watched_page(browser: Browser) -> tuple[Page, list[str]]:
    """A new page and the list its uncaught exceptions and console errors are appended to."""
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if console_error(m) else None)
    return page, errors

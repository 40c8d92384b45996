"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright (never downloads).

The browser tests skip when no Chromium is installed, except under CI (``CI=true``), where a missing
browser or driver fails them instead: the README's test command installs Chromium first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test_artifacts"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def chromium_path() -> str | None:
    """Debian's Chromium (or ``CHROMIUM_PATH``), or None."""
    custom = os.environ.get("CHROMIUM_PATH")
    if custom:
        return custom if os.access(custom, os.X_OK) else None
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium")
    return found


def unavailable(reason: str) -> None:
    """Skip, or fail under CI (where the browser tests must run)."""
    if in_ci():
        pytest.fail(f"browser tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def launch_browser():
    """(playwright, browser) with Debian's Chromium; skips (or fails under CI) when unavailable."""
    path = chromium_path()
    if path is None:
        unavailable("Chromium is not installed (apt-get install chromium, or set CHROMIUM_PATH)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright Python package is not installed")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
    except Exception:
        pw.stop()
        raise
    return pw, browser


class ConsoleLog:
    """Console messages and uncaught page errors of one page."""

    def __init__(self, page) -> None:
        self.messages: list[tuple[str, str, str]] = []  # (type, text, url)
        self.page_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(f"{exc}\n{getattr(exc, 'stack', '')}"))

    def _on_console(self, msg) -> None:
        loc = msg.location or {}
        self.messages.append((msg.type, msg.text, loc.get("url", "")))

    def errors(self) -> list[str]:
        return [f"{text} ({url})" for kind, text, url in self.messages if kind == "error"] + self.page_errors

    def errors_mentioning(self, *needles: str) -> list[str]:
        return [e for e in self.errors() if any(n.lower() in e.lower() for n in needles)]

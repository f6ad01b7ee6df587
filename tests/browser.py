"""Open a report in a real headless Chromium (Debian's package, driven by Playwright) and collect what a
reader's browser would do with it: console errors, network requests, dialogs, the page's text and images."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest


def open_report(path: Path, text_selector: str = "body") -> dict[str, Any]:
    """Skips the calling test (with the reason) when Playwright or the chromium binary is missing."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium binary (Debian: apt-get install chromium; .ci/run installs it)")
    seen: dict[str, Any] = {"errors": [], "requests": [], "dialogs": []}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: seen["errors"].append(str(e)))
        page.on("request", lambda r: seen["requests"].append(r.url))
        page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        seen["text"] = page.inner_text(text_selector)
        seen["images"] = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        seen["attack_rows"] = page.eval_on_selector_all("#attacks tr", "els => els.length")
        seen["script_tags"] = page.eval_on_selector_all("script", "els => els.length")
        browser.close()
    seen["offline"] = all(url.startswith(("file://", "data:")) for url in seen["requests"])
    return seen

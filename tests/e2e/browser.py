"""Debian's Chromium, driven by Playwright: where it is, and how it is launched on a closed network."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Chromium's own background connections (updates, sync, QUIC probes) would be refused on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}
WHOLE_GRAPH = {"width": 1700, "height": 1250}
"""Large enough for the asset graph with every group expanded to show full asset nodes."""


def chromium() -> str | None:
    """Debian's Chromium (`apt-get install chromium`), or None when this machine has none."""
    found = shutil.which("chromium") or next((path for path in CHROMIUM_PATHS if Path(path).exists()), None)
    return str(found) if found else None


def launch(playwright: Any, executable: str, profile: Path) -> Any:
    """A headless browser context on a fresh profile folder (no downloaded browser: ``executable`` is used)."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=executable, args=CHROMIUM_ARGS, headless=True, viewport=VIEWPORT
    )


def expand_asset_graph(page: Any, ui_url: str) -> None:
    """Open the global asset graph with every group expanded and the asset list hidden."""
    from playwright.sync_api import expect

    page.goto(f"{ui_url}/asset-groups")
    for group in ("ingest", "warehouse", "enrichment", "quality"):
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    page.keyboard.press("Alt+e")  # expand every group (Dagster's shortcut)
    page.locator("button:has([aria-label=panel_show_right])").nth(1).click()  # hide the asset list

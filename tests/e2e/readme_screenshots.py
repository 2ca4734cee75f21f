"""Takes the README's screenshots from a running `etl dev` with Debian's Chromium: the asset graph with every group
expanded (docs/asset-graph.png) and the newest successful run that materialized events (docs/run.png).

    uv run python -m tests.e2e.readme_screenshots      # after the README's walk-through; reads ETL_UI_PORT
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import requests

from etl_assets.settings import PROJECT_ROOT, Settings
from tests.e2e.browser import WHOLE_GRAPH, chromium, expand_asset_graph, launch

LATEST_EVENTS_RUNS = """
{ runsOrError(filter: {statuses: [SUCCESS]}, limit: 20) { ... on Runs { results { runId assetSelection { path } } } } }
"""


def newest_events_run(ui_url: str) -> str:
    response = requests.post(f"{ui_url}/graphql", json={"query": LATEST_EVENTS_RUNS}, timeout=30)
    response.raise_for_status()
    for run in response.json()["data"]["runsOrError"]["results"]:
        if ["events"] in [key["path"] for key in run["assetSelection"] or []]:
            return run["runId"]
    raise SystemExit("no successful run of events yet: follow the README's walk-through to its backfill first")


def main() -> None:
    executable = chromium()
    if executable is None:
        raise SystemExit("no Chromium here: install Debian's package with `apt-get install chromium`")
    from playwright.sync_api import expect, sync_playwright

    ui_url = Settings.from_env().ui_base_url
    docs = PROJECT_ROOT / "docs"
    docs.mkdir(exist_ok=True)
    run_id = newest_events_run(ui_url)
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        context = launch(playwright, executable, Path(profile))
        page = context.new_page()
        page.set_viewport_size(WHOLE_GRAPH)
        expand_asset_graph(page, ui_url)
        expect(page.get_by_text("user_daily_activity", exact=True)).to_be_visible()
        page.wait_for_timeout(2000)  # the nodes' latest events and check counts load after the graph
        page.screenshot(path=str(docs / "asset-graph.png"))
        page.set_viewport_size({"width": 1600, "height": 1000})
        page.goto(f"{ui_url}/runs/{run_id}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        page.wait_for_timeout(2000)
        page.screenshot(path=str(docs / "run.png"))
        context.close()
    print(f"wrote {docs / 'asset-graph.png'} and {docs / 'run.png'} (run {run_id})", file=sys.stdout)


if __name__ == "__main__":
    main()

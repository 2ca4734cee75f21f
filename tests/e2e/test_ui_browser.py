"""The Dagster UI as users meet it, clicked in a real browser: Debian's Chromium, driven by Playwright, against
a running `etl dev`. Every step leaves a screenshot under test-artifacts/browser/<test>/ (git-ignored).

What happened is checked where it happened too: in the warehouse, and in Dagster's own records of runs.
Without a Chromium on this machine these tests are skipped, saying how to install one; under CI (`CI=true`) they
fail with that line instead, so CI cannot pass without them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from etl_assets.definitions import defs
from tests.e2e.browser import VIEWPORT, WHOLE_GRAPH, chromium, expand_asset_graph, launch
from tests.e2e.dev_platform import DAILY_ASSETS, DevPlatform, FailedCheck, shop_events

DAILY_SELECTION = 'key:"events" or group:"enrichment"'
PARTITION_BOX = re.compile(r"^(No matching partitions|ex: .+)$")
"""The launch dialog's partition box, by its placeholder: one while no partition is selected, examples after."""
UI_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    executable = chromium()
    if executable is None:
        missing = (
            "no Chromium here (looked for `chromium` on PATH and /usr/bin/chromium): install Debian's package "
            "with `apt-get install chromium`, as .ci/run does"
        )
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(missing, pytrace=False)  # CI must not pass without the browser tests
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch(playwright, executable, tmp_path_factory.mktemp("chromium-profile"))
        context.set_default_timeout(UI_TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser, dev_platform: DevPlatform):
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    tab = browser.new_page()
    yield tab
    tab.close()


@dataclass
class Screenshots:
    folder: Path
    taken: list[Path] = field(default_factory=list)

    def __call__(self, page, step: str) -> Path:
        path = self.folder / f"{len(self.taken) + 1:02d}-{step}.png"
        page.screenshot(path=str(path), animations="disabled")
        self.taken.append(path)
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest, dev_platform: DevPlatform) -> Iterator[Screenshots]:
    folder = dev_platform.artifacts / "browser" / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    screenshots = Screenshots(folder)
    yield screenshots
    assert screenshots.taken, "a browser test keeps a screenshot of each step"


def _today():
    return datetime.now(UTC).date()


def _open_materialize_dialog(page, ui: str):
    """Filter the asset graph to events and the enrichment tables, press Materialize all…: the launch dialog."""
    from playwright.sync_api import expect

    page.goto(f"{ui}/asset-groups")
    expect(page.get_by_role("button", name="Materialize all…")).to_be_enabled()
    page.locator(".CodeMirror").first.click()
    page.keyboard.type(DAILY_SELECTION)
    page.keyboard.press("Enter")
    # The graph re-renders once the filter applies, and a dialog opened before that is dropped with the old graph:
    # wait until the groups outside the selection are gone.
    expect(page).to_have_url(re.compile(r"/asset-groups~"))
    expect(page.get_by_text("enrichment", exact=True).first).to_be_visible()
    for outside in ("ingest", "quality"):
        expect(page.get_by_text(outside, exact=True)).to_have_count(0)
    page.get_by_role("button", name="Materialize all…").click()
    partitions = page.get_by_placeholder(PARTITION_BOX)
    confirm = page.get_by_role("button", name="Confirm")
    expect(partitions.or_(confirm)).to_be_visible()
    if confirm.is_visible():  # "upstream staging_events was never materialized": it is filled by ingest runs
        confirm.click()
    expect(partitions).to_be_visible()
    dialog = page.get_by_role("dialog").last
    expect(dialog.get_by_text("Launch runs to materialize 5 assets")).to_be_visible()
    return dialog, partitions


DIALOG_ATTEMPTS = 3
CHOOSING_TIMEOUT_MS = 15_000


def _choose_partitions(page, ui: str, partitions_text: str, chosen: str):
    """Open the launch dialog and type ``partitions_text`` into its partition box until it says ``chosen``.

    Two things of the UI's own can undo the typing, so each is met by doing it again, up to ``DIALOG_ATTEMPTS``
    times: the dialog applies its default selection once the partitions' health has loaded, which resets the box;
    and the asset graph re-renders when its live data changes, which can drop the open dialog. Which partitions
    the dialog finally chose is checked all the same.
    """
    from playwright.sync_api import Error as PlaywrightError

    def in_a_new_dialog():
        dialog, partitions = _open_materialize_dialog(page, ui)
        return _retried(lambda: _type_partitions(dialog, partitions, partitions_text, chosen), AssertionError)

    return _retried(in_a_new_dialog, (AssertionError, PlaywrightError))


def _type_partitions(dialog, partitions, partitions_text: str, chosen: str):
    from playwright.sync_api import expect

    partitions.fill(partitions_text, timeout=CHOOSING_TIMEOUT_MS)
    partitions.press("Enter", timeout=CHOOSING_TIMEOUT_MS)
    expect(dialog.get_by_text(chosen, exact=True)).to_be_visible(timeout=CHOOSING_TIMEOUT_MS)
    expect(partitions).to_have_value(partitions_text)
    return dialog


def _retried(action, errors):
    """``action()``, done again after one of ``errors``, ``DIALOG_ATTEMPTS`` times at most (the last error stands)."""
    for _ in range(DIALOG_ATTEMPTS - 1):
        try:
            return action()
        except errors:
            continue
    return action()


def test_the_asset_graph_shows_every_asset_and_every_check(browser, page, shots, dev_platform: DevPlatform):
    from playwright.sync_api import expect

    graph = defs().get_repository_def().asset_graph
    assets = sorted(key.to_user_string() for key in graph.get_all_asset_keys())
    checks: dict[str, list[str]] = {}
    for key in graph.asset_check_keys:
        checks.setdefault(key.asset_key.to_user_string(), []).append(key.name)

    page.set_viewport_size(WHOLE_GRAPH)
    expand_asset_graph(page, dev_platform.ui_url)
    for asset in assets:
        expect(page.get_by_text(asset, exact=True)).to_be_visible()
    shots(page, "asset-graph")

    page.set_viewport_size(VIEWPORT)
    for asset, names in sorted(checks.items()):
        page.goto(f"{dev_platform.ui_url}/assets/{asset}?view=checks")
        expect(page.get_by_text(f"Checks ({len(names)})")).to_be_visible()
        for name in names:
            expect(page.get_by_text(name, exact=True).first).to_be_visible()
        shots(page, f"checks-of-{asset}")
    assert len(shots.taken) == 1 + len(checks)


def test_one_day_of_events_and_its_enrichment_materializes_by_clicking(browser, page, shots, dev_platform):
    from playwright.sync_api import expect

    day = _today() - timedelta(days=30)
    dev_platform.stage("ui-one-day", shop_events("ui-day", day, 40))

    dialog = _choose_partitions(page, dev_platform.ui_url, day.isoformat(), "1 partition")
    shots(page, "one-partition-chosen")
    dialog.get_by_role("button", name="Launch 1 run").click()
    launched = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    expect(launched).to_be_visible()
    shots(page, "run-launched")
    short_id = launched.inner_text().split()[-1]

    runs = dev_platform.runs(tags=[{"key": "dagster/partition", "value": day.isoformat()}])
    run_id = next(run["runId"] for run in runs if run["runId"].startswith(short_id))
    assert dev_platform.wait_for_run(run_id) == "SUCCESS"
    page.goto(f"{dev_platform.ui_url}/runs/{run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text(f"partition: {day.isoformat()}")).to_be_visible()
    expect(page.get_by_text("5 assets", exact=True)).to_be_visible()
    shots(page, "run-succeeded")

    assert dev_platform.scalar("SELECT count(*) FROM events WHERE occurred_at::date = :day", day=day) == 40
    assert dev_platform.scalar("SELECT purchasers FROM daily_funnel WHERE day = :day", day=day) == 10
    assert dev_platform.scalar("SELECT viewers FROM daily_funnel WHERE day = :day", day=day) == 10
    for asset in DAILY_ASSETS:  # what the UI plots: each materialization's figures, from the UI's own API
        [materialization] = dev_platform.materializations(asset, day)
        assert materialization["runId"] == run_id, asset
        figures = materialization["figures"]
        assert figures["rows written"] > 0 and figures["rows per second"] > 0 and figures["seconds"] > 0, asset
    events_figures = dev_platform.materializations("events", day)[0]["figures"]
    assert events_figures["rows written"] == 40 and events_figures["errors"] == 0


def test_a_three_day_backfill_launches_by_clicking_and_loads_each_day(browser, page, shots, dev_platform):
    from playwright.sync_api import expect

    days = [_today() - timedelta(days=40 - offset) for offset in range(3)]
    for day in days:
        dev_platform.stage(f"ui-backfill-{day}", shop_events(f"ui-bf-{day}", day, 12))

    dialog = _choose_partitions(
        page, dev_platform.ui_url, f"[{days[0].isoformat()}...{days[-1].isoformat()}]", "3 partitions"
    )
    shots(page, "three-partitions-chosen")
    dialog.get_by_role("button", name="Launch backfill").click()
    created = page.get_by_text(re.compile(r"Created backfill [a-z0-9]+"))
    expect(created).to_be_visible()
    shots(page, "backfill-created")
    backfill_id = created.inner_text().split()[-1]

    assert dev_platform.wait_for_backfill(backfill_id) in {"COMPLETED", "COMPLETED_SUCCESS"}
    page.goto(f"{dev_platform.ui_url}/runs/b/{backfill_id}?tab=partitions")
    expect(page.get_by_text(f"{days[0].isoformat()}...{days[-1].isoformat()}")).to_be_visible()
    expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible()
    shots(page, "backfill-succeeded")

    runs = dev_platform.runs(tags=[{"key": "dagster/backfill", "value": backfill_id}])
    assert [run["status"] for run in runs] == ["SUCCESS"]
    for day in days:
        assert dev_platform.scalar("SELECT count(*) FROM events WHERE occurred_at::date = :day", day=day) == 12
        assert dev_platform.scalar("SELECT viewers FROM daily_funnel WHERE day = :day", day=day) == 3
        assert dev_platform.scalar("SELECT count(*) FROM sessions WHERE day = :day", day=day) == 3


def test_the_s3_sensor_turned_on_by_clicking_starts_a_run_for_a_new_file(browser, page, shots, dev_platform):
    from playwright.sync_api import expect

    sensor = "landing_files_sensor"
    if dev_platform.sensor_status(sensor) == "RUNNING":
        dev_platform.stop_sensor(sensor)
    key = dev_platform.drop_landing_file("ui-sensor", shop_events("ui-sensor", _today() - timedelta(days=60), 25))

    page.goto(f"{dev_platform.ui_url}/automation")
    expect(page.get_by_text(sensor, exact=True)).to_be_visible()
    shots(page, "automation")
    page.get_by_text(sensor, exact=True).click()
    switch = page.locator("input[type=checkbox]")
    expect(switch).not_to_be_checked()
    try:
        page.locator("label:has(input[type=checkbox])").click()  # the switch's visible part
        expect(switch).to_be_checked()
        dev_platform.wait_for_sensor_status(sensor, "RUNNING")  # the switch flips before the daemon's state does
        shots(page, "sensor-on")
        run = dev_platform.wait_for_tagged_run("etl/landing_key", key)
    finally:
        dev_platform.stop_sensor(sensor)
    assert (run["jobName"], run["status"]) == ("ingest_landing_file_job", "SUCCESS")

    page.goto(f"{dev_platform.ui_url}/runs/{run['runId']}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text("ingest_landing_file_job").first).to_be_visible()
    shots(page, "ingest-run-succeeded")
    staged = dev_platform.scalar(
        "SELECT count(*) FROM staging_events s JOIN raw_batches b USING (batch_id) WHERE b.source_uri LIKE :uri",
        uri=f"%{key}",
    )
    assert staged == 25


def test_a_failed_check_opens_on_its_failing_rows(browser, page, shots, dev_platform, failed_check: FailedCheck):
    from playwright.sync_api import expect

    assert failed_check.run_status == "SUCCESS"
    page.goto(f"{dev_platform.ui_url}/assets/staging_events?view=checks")
    page.get_by_text("staged_day_valid", exact=True).first.click()
    expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()
    shots(page, "the-check")

    # The history, not the latest status: an ingest run since (another test's) makes the check "not evaluated"
    # for staging_events' newest materialization, as Dagster shows checks against the latest materialization.
    page.get_by_text("Execution history", exact=True).click()
    execution = page.locator("tr", has_text=f"held back: s3 on {failed_check.day.isoformat()}").first
    expect(execution.get_by_text("Failed", exact=True)).to_be_visible()
    shots(page, "execution-history")
    execution.locator("button").last.click()
    metadata = page.get_by_role("dialog").last
    expect(metadata.get_by_text("failing rows: valid_values")).to_be_visible()
    expect(metadata.get_by_text(str(len(failed_check.bad_event_ids)), exact=True)).to_be_visible()
    shots(page, "check-metadata")
    metadata.get_by_text("[Show Markdown]").first.click()
    failing_rows = page.get_by_role("dialog").last
    expect(failing_rows.get_by_text("first failing rows")).to_be_visible()
    first_bad = failing_rows.get_by_text(re.compile(r'"event_id":"badday-\d+"')).first
    expect(first_bad).to_be_visible()
    event_id = re.search(r'"event_id":"(badday-\d+)"', first_bad.inner_text()).group(1)
    assert event_id in failed_check.bad_event_ids
    expect(failing_rows.get_by_text("price '€12.50' is not a number").first).to_be_visible()
    shots(page, "failing-rows")
    day = failed_check.day
    assert dev_platform.scalar("SELECT count(*) FROM events WHERE occurred_at::date = :day", day=day) == 0

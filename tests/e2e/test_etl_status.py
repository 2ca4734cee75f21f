"""`etl status` and `etl seed` against the whole platform running (`etl dev`): every service up, each asset's last
run as Dagster recorded it, what waits in staging; the seed's report of what it wrote."""

from __future__ import annotations

import subprocess

from etl_assets.definitions import defs
from tests.e2e.dev_platform import ETL, DevPlatform, FailedCheck

LATEST_EVENTS_RUN = """
{ assetsLatestInfo(assetKeys: [{path: ["events"]}]) { latestRun { id status } } }
"""


def _etl(dev_platform: DevPlatform, *arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ETL, *arguments], env={**dev_platform.env, **env}, capture_output=True, text=True, timeout=120
    )


def test_status_shows_every_service_up_and_each_asset_last_run(dev_platform: DevPlatform, failed_check: FailedCheck):
    result = _etl(dev_platform, "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    services = {line.split()[0]: line.split()[1] for line in lines[1:5]}
    assert services == {"warehouse": "up", "s3": "up", "dagster": "up", "collector": "up"}

    pending = dev_platform.scalar("SELECT count(*) FROM staging_status WHERE status = 'pending'")
    assert pending >= len(failed_check.bad_event_ids)  # the held-back source's rows stay pending
    assert any(line.startswith(f"staging     {pending:,} rows waiting to merge") for line in lines)
    assert failed_check.day.isoformat() in next(line for line in lines if line.startswith("staging"))
    day = failed_check.day.isoformat()
    assert any(line.startswith("  s3 ") and f"HELD BACK on {day}" in line for line in lines)
    assert any(line.startswith("held back   ") for line in lines)
    assert any(line.startswith(f"  s3 on {day} (160 rows waiting): valid_values: 80 of 160 rows") for line in lines)

    assets = lines[next(number for number, line in enumerate(lines) if line.startswith("assets")) + 1 :]
    names = {key.to_user_string() for key in defs().get_repository_def().asset_graph.get_all_asset_keys()}
    assert {line.split()[0] for line in assets} == names
    latest = dev_platform.graphql(LATEST_EVENTS_RUN)["assetsLatestInfo"][0]["latestRun"]
    events = next(line for line in assets if line.split()[0] == "events")
    assert events.split()[1] == latest["status"]
    assert f"run {latest['id'][:8]}" in events


def test_seed_writes_the_demo_files_and_reports_what_it_did(dev_platform: DevPlatform):
    # Under a prefix of its own: the landing sensor of the other tests watches landing/.
    arguments = ("--days", "2", "--files", "3", "--events-per-file", "50", "--last-day", "2026-01-31")
    result = _etl(dev_platform, "seed", *arguments, ETL_LANDING_PREFIX="seeded/")
    assert result.returncode == 0, result.stderr
    report = result.stdout.strip().splitlines()[-1]
    assert report.startswith("wrote 3 files, ")
    assert f"2 days (2026-01-30 to 2026-01-31) to s3://{dev_platform.landing_bucket}/seeded/ in " in report
    records = int(report.split(", ")[1].split()[0].replace(",", ""))
    keys = dev_platform.s3.list_objects_v2(Bucket=dev_platform.landing_bucket, Prefix="seeded/2026-01-")["Contents"]
    assert len(keys) == 3
    assert records >= 150  # 50 events a file, and the demo's bad and re-sent rows on top

"""The flows users click in the Dagster UI, through the API the UI itself calls (its GraphQL endpoint), against a
running `etl dev`: list every asset and check, materialize a day, backfill three days, let the S3 sensor start a
run for a new file, and read a failed check's failing rows. dagster-graphql's client where it has the call, raw
GraphQL where it has none (backfills, sensors, check results)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from etl_assets.definitions import defs
from tests.e2e.dev_platform import DAILY_ASSETS, DevPlatform, FailedCheck, shop_events

ASSET_NODES = """
{
  assetNodes {
    assetKey { path }
    groupName
    description
    owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    kinds
    assetChecksOrError { ... on AssetChecks { checks { name description } } }
  }
}
"""
MATERIALIZATIONS = """
query Materializations($asset: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $asset) {
    ... on AssetNode {
      assetMaterializations(partitions: $partitions, limit: 5) {
        runId partition
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on FloatMetadataEntry { floatValue }
        }
      }
    }
  }
}
"""


def _today():
    return datetime.now(UTC).date()


def _figures(entries: list[dict]) -> dict[str, float]:
    return {
        entry["label"]: entry.get("intValue", entry.get("floatValue"))
        for entry in entries
        if "intValue" in entry or "floatValue" in entry
    }


def test_the_api_lists_every_asset_and_check_with_what_it_is(dev_platform: DevPlatform):
    graph = defs().get_repository_def().asset_graph
    nodes = {"/".join(node["assetKey"]["path"]): node for node in dev_platform.graphql(ASSET_NODES)["assetNodes"]}
    assert set(nodes) == {key.to_user_string() for key in graph.get_all_asset_keys()}
    shown_checks = set()
    for name, node in nodes.items():
        assert node["description"] == graph.get(dg.AssetKey(name)).description
        assert node["groupName"] in {"ingest", "warehouse", "enrichment", "quality"}
        assert node["owners"] == [{"team": "data-platform"}]
        assert node["kinds"]
        for check in node["assetChecksOrError"]["checks"]:
            assert check["description"]
            shown_checks.add((name, check["name"]))
    assert shown_checks == {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}


def test_one_day_of_events_and_its_enrichment_materializes_with_its_figures(dev_platform: DevPlatform):
    day = _today() - timedelta(days=31)
    dev_platform.stage("gql-one-day", shop_events("gql-day", day, 40))
    run_id = dev_platform.client.submit_job_execution(
        "__ASSET_JOB", asset_selection=list(DAILY_ASSETS), tags={"dagster/partition": day.isoformat()}
    )
    assert dev_platform.wait_for_run(run_id) == "SUCCESS"

    assert dev_platform.scalar("SELECT count(*) FROM events WHERE occurred_at::date = :day", day=day) == 40
    viewers = dev_platform.scalar("SELECT viewers FROM daily_funnel WHERE day = :day", day=day)
    assert viewers == 10
    for asset in DAILY_ASSETS:
        materializations = dev_platform.graphql(
            MATERIALIZATIONS, {"asset": {"path": [asset]}, "partitions": [day.isoformat()]}
        )["assetNodeOrError"]["assetMaterializations"]
        assert [m["runId"] for m in materializations] == [run_id], asset
        figures = _figures(materializations[0]["metadataEntries"])
        assert figures["rows written"] > 0 and figures["rows per second"] > 0 and figures["seconds"] > 0, asset
    events_figures = _figures(
        dev_platform.graphql(MATERIALIZATIONS, {"asset": {"path": ["events"]}, "partitions": [day.isoformat()]})[
            "assetNodeOrError"
        ]["assetMaterializations"][0]["metadataEntries"]
    )
    assert events_figures["rows written"] == 40 and events_figures["errors"] == 0


def test_a_three_day_backfill_is_one_run_that_loads_each_day(dev_platform: DevPlatform):
    days = [_today() - timedelta(days=45 - offset) for offset in range(3)]
    for day in days:
        dev_platform.stage(f"gql-backfill-{day}", shop_events(f"gql-bf-{day}", day, 12))
    backfill_id = dev_platform.launch_backfill(DAILY_ASSETS, days)
    assert dev_platform.wait_for_backfill(backfill_id) in {"COMPLETED", "COMPLETED_SUCCESS"}

    runs = dev_platform.runs(tags=[{"key": "dagster/backfill", "value": backfill_id}])
    assert [run["status"] for run in runs] == ["SUCCESS"]  # BackfillPolicy.single_run: the range is one run
    for day in days:
        assert dev_platform.scalar("SELECT count(*) FROM events WHERE occurred_at::date = :day", day=day) == 12
        assert dev_platform.scalar("SELECT count(*) FROM sessions WHERE day = :day", day=day) == 3


def test_the_s3_sensor_starts_a_run_for_a_new_file_that_succeeds(dev_platform: DevPlatform):
    day = _today() - timedelta(days=61)
    key = dev_platform.drop_landing_file("gql-sensor", shop_events("gql-sensor", day, 25))
    try:
        assert dev_platform.start_sensor("landing_files_sensor") == "RUNNING"
        run = dev_platform.wait_for_tagged_run("etl/landing_key", key)
    finally:
        dev_platform.stop_sensor("landing_files_sensor")
    assert (run["jobName"], run["status"]) == ("ingest_landing_file_job", "SUCCESS")
    staged = dev_platform.scalar(
        "SELECT count(*) FROM staging_events s JOIN raw_batches b USING (batch_id) WHERE b.source_uri LIKE :uri",
        uri=f"%{key}",
    )
    assert staged == 25


def test_a_held_source_shows_its_reason_and_failing_rows_and_does_not_fail_the_run(
    dev_platform: DevPlatform, failed_check: FailedCheck
):
    assert failed_check.run_status == "SUCCESS"  # the gate held the source back; the run itself went on
    executions = [
        execution
        for execution in dev_platform.check_executions("staging_events", "staged_day_valid")
        if execution["runId"] == failed_check.run_id and execution["evaluation"] is not None
    ]
    assert len(executions) == 1
    evaluation = executions[0]["evaluation"]
    assert (evaluation["success"], evaluation["severity"]) == (False, "WARN")
    day = failed_check.day
    assert evaluation["description"].startswith(f"held back: s3 on {day.isoformat()} (160 rows waiting): valid_values")
    metadata = {entry["label"]: entry for entry in evaluation["metadataEntries"]}
    assert metadata["failing rows: valid_values"]["intValue"] == len(failed_check.bad_event_ids)
    assert metadata["sources held back"]["intValue"] == 1
    assert f"| {day.isoformat()} | s3 | 160 | valid_values:" in metadata["held back"]["mdStr"]
    failing_rows = metadata["first failing rows"]["mdStr"]
    assert "is not a number" in failing_rows
    assert any(event_id in failing_rows for event_id in failed_check.bad_event_ids)
    assert dev_platform.scalar("SELECT count(*) FROM events WHERE occurred_at::date = :day", day=day) == 0

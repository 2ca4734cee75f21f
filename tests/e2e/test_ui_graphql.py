"""What the Dagster UI's own API (its GraphQL endpoint) says that the pages the browser tests click through
(tests/e2e/test_ui_browser.py) do not show: each asset's description, owner, kinds and group and each check's
description; the retry tags of a run a blocking check stopped; the failed check's evaluation as recorded. The
flows themselves (materialize a day, a backfill, the S3 sensor, a failed check's failing rows) are clicked once,
in the browser tests, which check their results in the warehouse and through this API too."""

from __future__ import annotations

import dagster as dg

from etl_assets.definitions import defs
from tests.e2e.dev_platform import DevPlatform, FailedCheck

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

"""Runs log one JSON object per line, with the run, asset, partition and batch a line belongs to.

The instance is configured with the ``python_logs`` section of the project's own ``dagster.yaml``, so the
test breaks if that configuration stops producing structured lines.
"""

from __future__ import annotations

import json

import dagster as dg
import yaml

from tests.harness import Pipeline


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_runs_log_json_lines_with_run_asset_partition_and_batch(
    definitions, s3, buckets, project_root, capfd, warehouse_engine
):
    python_logs = yaml.safe_load((project_root / "dagster.yaml").read_text())["python_logs"]
    records = b"".join(
        b'{"id": "e%d", "type": "page_view", "timestamp": "2025-03-01T10:00:%02dZ", "user_id": "u1"}\n' % (n, n)
        for n in range(5)
    )
    s3.put_object(Bucket=buckets["landing"], Key="landing/2025-03-01/logs.jsonl", Body=records)
    with dg.instance_for_test(overrides={"python_logs": python_logs}) as instance:
        run = Pipeline(definitions, instance)
        run.settle()
        ingest_run, daily_run = run.runs[0].run_id, run.runs[1].run_id

    lines = _json_lines(capfd.readouterr().err)
    assert lines, "no JSON log lines"
    ingest = [line for line in lines if line.get("run_id") == ingest_run]
    daily = [line for line in lines if line.get("run_id") == daily_run]
    assert ingest and daily

    staged = next(line for line in ingest if "records" in line["message"] and "batch_id" in line)
    assert staged["batch_id"].startswith("s3:") or "logs.jsonl" in staged["batch_id"]
    assert staged["source"] == "s3" and staged["rows"] == 5
    assert staged["job"] == "ingest_landing_file_job" and staged["step"] == "ingest_landing_file"
    assert {"time", "level", "logger", "message"} <= staged.keys()

    materialized = [line for line in daily if line.get("event") == "ASSET_MATERIALIZATION"]
    assert {line["asset"] for line in materialized} >= {"events", "daily_funnel"}
    assert {line["partition"] for line in materialized} == {"2025-03-01..2025-03-01"}
    checks = [line for line in daily if line.get("event") == "ASSET_CHECK_EVALUATION"]
    assert checks and all(line["asset"] for line in checks)

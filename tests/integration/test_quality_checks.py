"""Bad data fails the right check with the right severity; the staging gate holds a bad source back, and a failed
blocking check on events holds the day's enrichment back.

Every test stages records into a real PostgreSQL and runs the real ``daily_events_job`` (or the check
jobs) of the code location in-process, then reads what the checks said and what materialized.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import text

from etl_assets.transform import normalize as normalize_module
from etl_assets.warehouse.partitions import ensure_event_partitions
from tests.harness import stage_payloads

DAY = date(2025, 3, 1)
NOON = datetime(2025, 3, 1, 12, tzinfo=UTC)
ENRICHMENT = ("user_daily_activity", "sessions", "daily_funnel", "product_daily_sales")


def _event(number: int, **changes) -> dict:
    payload = {
        "id": f"evt-{number}",
        "type": "page_view",
        "timestamp": (NOON + timedelta(seconds=number)).isoformat(),
        "user_id": f"user-{number % 9}",
        "session_id": f"session-{number % 4}",
        "page_url": f"https://shop.example/p/{number}",
    }
    payload.update(changes)
    return payload


def _purchase(number: int, **changes) -> dict:
    fields = {"type": "purchase", "product_id": "sku-1", "price": 12.5, "currency": "EUR", "quantity": 1}
    return _event(number, **{**fields, **changes})


def _run_day(definitions: dg.Definitions, instance: dg.DagsterInstance, job: str = "daily_events_job"):
    return definitions.resolve_job_def(job).execute_in_process(
        partition_key=DAY.isoformat(), instance=instance, raise_on_error=False
    )


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def _materialized(result) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


def _severity(evaluation: dg.AssetCheckEvaluation) -> str | None:
    return None if evaluation.passed else evaluation.severity.value


def _count(evaluation: dg.AssetCheckEvaluation, name: str) -> int:
    return evaluation.metadata[name].value


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_a_clean_day_passes_every_check_and_builds_everything(definitions, warehouse_engine, instance):
    stage_payloads(warehouse_engine, "clean", [_event(n) for n in range(40)] + [_purchase(n) for n in range(40, 50)])
    result = _run_day(definitions, instance)
    assert result.success
    checks = _checks(result)
    assert {name: _severity(evaluation) for name, evaluation in checks.items()} == dict.fromkeys(
        [
            "staged_day_valid",
            "schema_drift",
            "events_valid",
            "events_reconciled",
            "order_lines_valid",
            *(f"{table}_valid" for table in ENRICHMENT),
        ]
    )
    assert _count(checks["events_reconciled"], "records received") == 50
    assert _count(checks["events_reconciled"], "rows in events") == 50
    assert {"events", *ENRICHMENT} <= _materialized(result)
    figures = next(
        event.materialization.metadata
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey("events")
    )
    assert figures["rows written"].value == 50 and figures["errors"].value == 0
    assert figures["rows per second"].value > 0 and figures["succeeded at"].value > 0


def test_one_event_without_a_type_warns_and_the_day_still_loads(definitions, warehouse_engine, instance):
    stage_payloads(warehouse_engine, "few-bad", [_event(n) for n in range(99)] + [_event(99, type="")])
    result = _run_day(definitions, instance)
    assert result.success
    staged = _checks(result)["staged_day_valid"]
    assert _severity(staged) == "WARN"
    assert _count(staged, "failing rows: accepted_event_type") == 1
    assert {"events", *ENRICHMENT} <= _materialized(result)
    reconciled = _checks(result)["events_reconciled"]
    assert (_count(reconciled, "rows in events"), _count(reconciled, "rows quarantined")) == (99, 1)


@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        ({"type": ""}, "accepted_event_type"),
        ({"type": "add_to_cart", "product_id": "sku-2", "price": -3}, "price_not_negative"),
    ],
)
def test_mostly_rejected_staging_holds_its_source_back(definitions, warehouse_engine, instance, bad, rule):
    stage_payloads(warehouse_engine, "mostly-bad", [_event(n, **(bad if n % 2 else {})) for n in range(200)])
    result = _run_day(definitions, instance)
    assert result.success
    staged = _checks(result)["staged_day_valid"]
    assert _severity(staged) == "WARN"
    assert staged.description.startswith(f"held back: s3 on {DAY.isoformat()} (200 rows waiting): {rule}: 100 of ")
    assert _count(staged, f"failing rows: {rule}") == 100
    assert _count(staged, "sources held back") == 1
    assert "| " + rule in staged.metadata["first failing rows"].value
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM events")) == 0
        assert conn.scalar(text("SELECT count(*) FROM staging_status WHERE status = 'pending'")) == 100
        assert conn.scalar(text("SELECT count(*) FROM quarantine")) == 100  # quarantined as they were staged
        assert conn.execute(text("SELECT day, source FROM held_sources")).all() == [(DAY, "s3")]
    reconciled = _checks(result)["events_reconciled"]
    assert _severity(reconciled) is None  # held rows are still waiting, not lost
    assert _count(reconciled, "rows waiting to merge") == 100


def test_a_staged_row_outside_its_day_holds_its_source_back(definitions, warehouse_engine, instance):
    stage_payloads(warehouse_engine, "moved", [_event(n) for n in range(10)])
    with warehouse_engine.begin() as conn:  # behind the platform's back: a row filed under the wrong day
        conn.execute(
            text(
                "UPDATE staging_events SET payload = jsonb_set(payload, '{timestamp}', to_jsonb(CAST(:ts AS text))), "
                "occurred_at = CAST(:ts AS timestamptz) WHERE record_no = 3"
            ),
            {"ts": "2025-03-02T08:00:00+00:00"},
        )
    result = _run_day(definitions, instance)
    staged = _checks(result)["staged_day_valid"]
    assert _severity(staged) == "WARN"
    assert _count(staged, "failing rows: staged_in_its_day") == 1
    assert "staged_in_its_day: 1 of 10 rows (10.0%), none tolerated" in staged.description
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM events")) == 0


def test_duplicate_deliveries_warn_in_staging_and_load_once(definitions, warehouse_engine, instance):
    payloads = [_event(n) for n in range(20)]
    stage_payloads(warehouse_engine, "first-delivery", payloads)
    stage_payloads(warehouse_engine, "second-delivery", payloads[:5])
    result = _run_day(definitions, instance)
    assert result.success
    checks = _checks(result)
    assert _severity(checks["staged_day_valid"]) == "WARN"
    assert _count(checks["staged_day_valid"], "failing rows: delivered_once") == 10
    assert _severity(checks["events_valid"]) is None
    assert _count(checks["events_reconciled"], "duplicates skipped") == 5
    assert _severity(checks["events_reconciled"]) is None


def test_a_duplicate_event_id_in_events_fails_the_blocking_checks_and_skips_enrichment(
    definitions, warehouse_engine, instance
):
    stage_payloads(warehouse_engine, "dup", [_event(n) for n in range(10)])
    with warehouse_engine.begin() as conn:  # a second copy of evt-1, written behind the platform's back
        ensure_event_partitions(conn, [DAY])
        conn.execute(
            text(
                "INSERT INTO events (event_id, occurred_at, event_type, user_id, person_id, source, batch_id, "
                "content_hash, ingested_at) VALUES ('evt-1', '2025-03-01 18:00+00', 'page_view', 'user-1', 'user-1', "
                "'s3', 'manual', repeat('0', 32), now())"
            )
        )
    result = _run_day(definitions, instance)
    assert not result.success
    checks = _checks(result)
    assert _severity(checks["events_valid"]) == "ERROR"
    assert _count(checks["events_valid"], "failing rows: event_id_unique") == 2
    assert _severity(checks["events_reconciled"]) == "ERROR"
    assert _count(checks["events_reconciled"], "events rows without a record") == 1
    assert "events" in _materialized(result)
    assert _materialized(result).isdisjoint(ENRICHMENT)


def test_missing_currency_warns_when_rare_and_blocks_enrichment_when_common(definitions, warehouse_engine, instance):
    purchases = [_purchase(n) for n in range(199)] + [_purchase(199, currency=None)]
    stage_payloads(warehouse_engine, "rare", purchases)
    rare = _run_day(definitions, instance)
    assert rare.success
    assert _severity(_checks(rare)["events_valid"]) == "WARN"
    assert _count(_checks(rare)["events_valid"], "failing rows: purchase_currency_iso4217") == 1

    stage_payloads(warehouse_engine, "common", [_purchase(n, currency=None) for n in range(200, 260)])
    common = _run_day(definitions, instance)
    assert not common.success
    assert _severity(_checks(common)["events_valid"]) == "ERROR"
    assert _materialized(common).isdisjoint(ENRICHMENT)


def test_reconciliation_fails_when_a_row_is_deleted_behind_the_platforms_back(definitions, warehouse_engine, instance):
    stage_payloads(warehouse_engine, "whole", [_event(n) for n in range(30)])
    assert _run_day(definitions, instance).success
    with warehouse_engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE event_id = 'evt-7'"))
    result = _run_day(definitions, instance)  # nothing waits to merge: the checks judge the day as it is
    assert not result.success
    assert _materialized(result).isdisjoint(ENRICHMENT)
    reconciled = _checks(result)["events_reconciled"]
    assert _severity(reconciled) == "ERROR"
    assert _count(reconciled, "records unaccounted for") == 1
    assert _count(reconciled, "rows in events") == 29
    assert "whole" in reconciled.metadata["mismatched batches"].value


def test_a_source_that_stopped_fails_the_freshness_check(definitions, warehouse_engine, instance):
    now = datetime.now(UTC)
    with warehouse_engine.begin() as conn:
        for batch_id, source, age in (
            ("fresh", "s3", timedelta(minutes=2)),
            ("quiet", "webhook:partner", timedelta(minutes=45)),
            ("stopped", "api:demo", timedelta(hours=3)),
        ):
            conn.execute(
                text(
                    "INSERT INTO raw_batches (batch_id, source, source_uri, sha256, byte_count, received_at) "
                    "VALUES (:batch, :source, 'x', repeat('0', 64), 1, :at)"
                ),
                {"batch": batch_id, "source": source, "at": now - age},
            )
    result = definitions.resolve_job_def("data_quality_job").execute_in_process(instance=instance)
    fresh = _checks(result)["sources_fresh"]
    assert _severity(fresh) == "ERROR"
    assert _count(fresh, "sources silent too long") == 1
    assert _count(fresh, "sources getting quiet") == 1
    assert "api:demo" in fresh.description and "webhook:partner" in fresh.description
    assert "s3" not in fresh.description


def test_the_quarantine_redrive_loads_fixed_records_once(definitions, warehouse_engine, instance, monkeypatch):
    untyped = {key: value for key, value in _event(30).items() if key != "type"} | {"action": "add_to_cart"}
    stage_payloads(warehouse_engine, "action", [_event(n) for n in range(30)] + [untyped])
    assert _run_day(definitions, instance).success
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM quarantine WHERE resolved_at IS NULL")) == 1

    # The fix to the transform: it learns that this sender names its events in "action".
    monkeypatch.setattr(normalize_module, "_EVENT_TYPE", normalize_module._Aliases("type", "event", "action"))
    monkeypatch.setattr(normalize_module, "_kept_plan", functools.lru_cache(maxsize=64)(normalize_module._plan))
    for _ in range(2):  # re-driving twice changes nothing the second time
        result = _run_day(definitions, instance, job="redrive_quarantine_job")
        assert result.success
        assert _severity(_checks(result)["events_reconciled"]) is None
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM events")) == 31
        assert conn.scalar(text("SELECT event_type FROM events WHERE event_id = 'evt-30'")) == "add_to_cart"
        assert conn.scalar(text("SELECT count(*) FROM quarantine WHERE resolved_at IS NULL")) == 0
        assert conn.scalar(text("SELECT count(*) FROM quarantine WHERE resolved_at IS NOT NULL")) == 1

    summary = _execute_quarantine_asset(definitions, instance)
    assert summary["unresolved rows"].value == 0
    assert summary["resolved rows"].value == 1


def _execute_quarantine_asset(definitions: dg.Definitions, instance: dg.DagsterInstance):
    result = dg.materialize(
        [definitions.resolve_assets_def("quarantine")],
        instance=instance,
    )
    return result.get_asset_materialization_events()[0].materialization.metadata


def test_the_quarantine_asset_reports_reasons_and_days_to_redrive(definitions, warehouse_engine, instance):
    stage_payloads(warehouse_engine, "some-bad", [_event(n) for n in range(30)] + [_event(30, type="")])
    assert _run_day(definitions, instance).success
    summary = _execute_quarantine_asset(definitions, instance)
    assert summary["unresolved rows"].value == 1
    assert "no event type" in summary["by reason"].value
    assert summary["days to re-drive"].value == DAY.isoformat()


FRESHNESS_WINDOWS = """
import dagster as dg
from etl_assets.definitions import defs
graph = defs().resolve_asset_graph()
for name in ("events", "user_daily_activity", "sessions", "daily_funnel", "product_daily_sales"):
    policy = graph.get(dg.AssetKey(name)).freshness_policy
    print(name, policy.warn_window.to_timedelta().total_seconds(), policy.fail_window.to_timedelta().total_seconds())
"""


def test_events_and_the_daily_tables_go_stale_after_the_configured_windows(pipeline_env, project_root):
    """The policies are read when the code location loads, so a process of its own loads it with the settings."""
    env = {**os.environ, "ETL_FRESHNESS_WARN_MINUTES": "15", "ETL_FRESHNESS_FAIL_MINUTES": "45"}
    finished = subprocess.run(
        [sys.executable, "-c", FRESHNESS_WINDOWS],
        cwd=project_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    windows = {line.split()[0]: tuple(line.split()[1:]) for line in finished.stdout.splitlines()}
    assert windows == dict.fromkeys(("events", *ENRICHMENT), ("900.0", "2700.0"))


def test_a_run_over_a_range_of_days_records_each_days_check_result_on_its_partition(
    definitions, warehouse_engine, instance
):
    next_day = [_event(n, timestamp=(NOON + timedelta(days=1, seconds=n)).isoformat()) for n in range(100, 110)]
    stage_payloads(warehouse_engine, "two-days", [_event(n) for n in range(10)] + next_day)
    result = definitions.resolve_job_def("daily_events_job").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2025-03-01", "dagster/asset_partition_range_end": "2025-03-02"},
    )
    assert result.success
    for check in ("events_valid", "events_reconciled", "sessions_valid"):
        asset = "sessions" if check == "sessions_valid" else "events"
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(asset), check), limit=10
        )
        by_partition = {record.partition: record.status.value for record in history if record.partition}
        assert by_partition == {"2025-03-01": "SUCCEEDED", "2025-03-02": "SUCCEEDED"}, check
    per_day = [e for e in result.get_asset_check_evaluations() if e.check_name == "events_reconciled" and e.partition]
    assert {e.partition: e.metadata["rows in events"].value for e in per_day} == {"2025-03-01": 10, "2025-03-02": 10}

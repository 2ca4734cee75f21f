"""A bad source holds back only itself: the staging gate judges each source of a day apart, the merge leaves a
held source's rows pending, and a fix (re-drive) or an operator's release merges them once.

Real PostgreSQL, the real code location's ``daily_events_job`` and ``redrive_quarantine_job`` executed in-process.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import text

from etl_assets.observability.alert_message import slack_message
from etl_assets.observability.alerts import check_alert, check_evaluations
from etl_assets.observability.platform_status import PlatformStatus, render_status, warehouse_state
from etl_assets.settings import Settings
from etl_assets.transform import normalize as normalize_module
from tests.harness import stage_payloads

DAY = date(2025, 3, 1)
SHOP, APP = "segment:shop", "segment:app"
REASON = "valid_values: 100 of 200 rows (50.0%), over the tolerance 5.0%"


def _events(tag: str, day: date, count: int, *, bad_every: int = 0) -> list[dict]:
    """``count`` product views of ``day``; every ``bad_every``-th one priced in a way the transform refuses."""
    noon = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
    return [
        {
            "id": f"{tag}-{number}",
            "type": "product_view",
            "timestamp": (noon + timedelta(seconds=number)).isoformat(),
            "user_id": f"{tag}-user-{number % 7}",
            "product_id": f"sku-{number % 5}",
            "price": "€12.50" if bad_every and number % bad_every == 0 else 12.5,
            "currency": "EUR",
        }
        for number in range(count)
    ]


def _run(definitions: dg.Definitions, instance: dg.DagsterInstance, job: str = "daily_events_job", **options):
    return definitions.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **options)


def _gate(result) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "staged_day_valid"]
    return evaluation


def _events_by_source(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT source, count(*) FROM events GROUP BY source")).all())


def _holds(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT day, source, reason FROM held_sources ORDER BY 1, 2"))]


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_a_source_sending_half_malformed_events_is_held_and_the_other_source_of_the_day_merges(
    definitions, warehouse_engine, instance, monkeypatch
):
    stage_payloads(warehouse_engine, "shop-1", _events("shop", DAY, 150), source=SHOP)
    stage_payloads(warehouse_engine, "app-1", _events("app", DAY, 200, bad_every=2), source=APP)
    result = _run(definitions, instance, partition_key=DAY.isoformat())
    assert result.success

    assert _events_by_source(warehouse_engine) == {SHOP: 150}
    assert _holds(warehouse_engine) == [(DAY, APP, REASON)]
    gate = _gate(result)
    assert (gate.passed, gate.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert gate.description.startswith(f"held back: {APP} on {DAY.isoformat()} (200 rows waiting): {REASON}")
    assert gate.metadata["sources held back"].value == 1
    held_table = gate.metadata["held back"].value
    assert f"| {DAY.isoformat()} | {APP} | 200 | {REASON} |" in held_table and SHOP not in held_table
    rules = gate.metadata["rules"].value
    assert f"| {DAY.isoformat()} | {APP} | valid_values | ERROR | 100 | 200 |" in rules
    assert f"| {DAY.isoformat()} | {SHOP} | valid_values | ERROR | 0 | 150 |" in rules
    [reconciled] = [e for e in result.get_asset_check_evaluations() if e.check_name == "events_reconciled"]
    # its rejected rows were quarantined as they were staged; its good rows wait
    assert reconciled.passed and reconciled.metadata["rows waiting to merge"].value == 100
    assert reconciled.metadata["rows held back"].value == 100
    by_source = reconciled.metadata["by source"].value
    assert f"| {DAY.isoformat()} | {APP} | 200 | 0 | 100 | 0 | 100 | 100 |" in by_source
    assert f"| {DAY.isoformat()} | {SHOP} | 150 | 150 | 0 | 0 | 0 | 0 |" in by_source

    # The alert names the held source and why.
    alerts = [check_alert(instance, record, Settings.from_env()) for record in check_evaluations(instance, None, 50)]
    [alert] = [alert for alert in alerts if alert is not None and alert.check_name == "staged_day_valid"]
    assert f"held back: {APP} on {DAY.isoformat()}" in json.dumps(slack_message(alert), ensure_ascii=False)

    # `etl status` shows the hold, by source.
    state = warehouse_state(warehouse_engine, datetime.now(UTC), 60, 120)
    lines = render_status(PlatformStatus(datetime.now(UTC), [], state, None, (60, 120)))
    assert any(line.startswith(f"  {APP}") and f"HELD BACK on {DAY.isoformat()}" in line for line in lines)
    assert not any(line.startswith(f"  {SHOP}") and "HELD" in line for line in lines)
    assert f"  {APP} on {DAY.isoformat()} (200 rows waiting): {REASON}" in "\n".join(lines)
    assert (
        f"staging     100 rows waiting to merge over 1 days ({DAY.isoformat()})" in lines
    )  # the rejected: quarantined

    # Run again, nothing fixed: the source stays held, nothing merges twice.
    assert _run(definitions, instance, partition_key=DAY.isoformat()).success
    assert _events_by_source(warehouse_engine) == {SHOP: 150}
    assert [hold[:2] for hold in _holds(warehouse_engine)] == [(DAY, APP)]

    # The fix: the transform learns to read a price with its currency sign. A re-drive judges the source again,
    # releases it and merges its rows, once.
    price = normalize_module._price
    monkeypatch.setattr(
        normalize_module, "_price", lambda value: price(value.lstrip("€") if isinstance(value, str) else value)
    )
    for _ in range(2):
        redrive = _run(definitions, instance, "redrive_quarantine_job", partition_key=DAY.isoformat())
        assert redrive.success
        assert _gate(redrive).passed
        assert [e.passed for e in redrive.get_asset_check_evaluations() if e.check_name == "events_reconciled"] == [
            True
        ]
    assert _events_by_source(warehouse_engine) == {SHOP: 150, APP: 200}
    assert _holds(warehouse_engine) == []
    with warehouse_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM staging_status WHERE status <> 'succeeded'")) == 0
        assert conn.scalar(text("SELECT count(*) FROM quarantine WHERE resolved_at IS NULL")) == 0


def test_an_operator_releases_a_held_source_whose_rows_will_not_get_better(definitions, warehouse_engine, instance):
    stage_payloads(warehouse_engine, "shop-1", _events("shop", DAY, 120), source=SHOP)
    stage_payloads(warehouse_engine, "app-1", _events("app", DAY, 200, bad_every=2), source=APP)
    assert _run(definitions, instance, partition_key=DAY.isoformat()).success
    assert [hold[:2] for hold in _holds(warehouse_engine)] == [(DAY, APP)]

    config = {"ops": {"events": {"config": {"redrive_quarantined": True, "merge_held_sources": True}}}}
    released = _run(definitions, instance, "redrive_quarantine_job", partition_key=DAY.isoformat(), run_config=config)
    assert released.success
    assert _events_by_source(warehouse_engine) == {SHOP: 120, APP: 100}
    assert _holds(warehouse_engine) == []
    with warehouse_engine.connect() as conn:
        quarantined = conn.execute(text("SELECT source, count(*) FROM quarantine GROUP BY source")).all()
    assert quarantined == [(APP, 100)]
    [reconciled] = [e for e in released.get_asset_check_evaluations() if e.check_name == "events_reconciled"]
    assert reconciled.passed and reconciled.metadata["rows waiting to merge"].value == 0


def test_a_range_run_with_one_bad_day_merges_every_other_day_and_source(definitions, warehouse_engine, instance):
    days = [DAY + timedelta(days=offset) for offset in range(3)]
    for day in days:
        stage_payloads(warehouse_engine, f"shop-{day}", _events(f"shop-{day}", day, 110), source=SHOP)
    stage_payloads(warehouse_engine, "app-bad-day", _events("app", days[1], 200, bad_every=2), source=APP)
    tags = {
        "dagster/asset_partition_range_start": days[0].isoformat(),
        "dagster/asset_partition_range_end": days[-1].isoformat(),
    }
    result = _run(definitions, instance, tags=tags)
    assert result.success
    assert _events_by_source(warehouse_engine) == {SHOP: 330}
    assert [hold[:2] for hold in _holds(warehouse_engine)] == [(days[1], APP)]
    with warehouse_engine.connect() as conn:
        pending = conn.execute(
            text("SELECT event_day, source, count(*) FROM staging_status WHERE status = 'pending' GROUP BY 1, 2")
        ).all()
    assert pending == [(days[1], APP, 100)]  # its 100 rejected rows are in quarantine


def test_a_source_with_few_rows_waiting_is_judged_with_its_latest_merged_rows(definitions, warehouse_engine, instance):
    """Near-real-time runs find a few rows waiting; a source that turns bad is still held once its share of the
    latest rows is over the tolerance."""
    stage_payloads(warehouse_engine, "app-good", _events("app", DAY, 120), source=APP)
    assert _run(definitions, instance, partition_key=DAY.isoformat()).success
    assert _events_by_source(warehouse_engine) == {APP: 120}

    bad = [{**event, "id": f"late-{event['id']}", "price": "€12.50"} for event in _events("app", DAY, 30)]
    stage_payloads(warehouse_engine, "app-bad", bad, source=APP)
    result = _run(definitions, instance, partition_key=DAY.isoformat())
    assert result.success
    gate = _gate(result)
    assert "the 30 rows waiting to merge and its 70 latest merged rows of the day" in gate.metadata["read"].value
    assert _holds(warehouse_engine) == [(DAY, APP, "valid_values: 30 of 100 rows (30.0%), over the tolerance 5.0%")]
    assert _events_by_source(warehouse_engine) == {APP: 120}

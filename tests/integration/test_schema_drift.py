"""Schema drift against the real PostgreSQL: the profile SQL, the source_fields upserts, and the check run
the way daily_events_job runs it (a partitioned run, the check on the unpartitioned staging_events)."""

from datetime import date, timedelta

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from sqlalchemy import Engine, select, text

from etl_assets.defs.schema_drift import schema_drift
from etl_assets.quality.drift import known_fields, profile_fields, record_profile
from etl_assets.resources import WarehouseResource
from etl_assets.settings import Settings
from etl_assets.transform.drift import FieldProfile
from etl_assets.warehouse.schema import source_fields
from tests.harness import stage_payloads

MIN_ROWS = 5
daily = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC")


@dg.asset(partitions_def=daily)
def partitioned_stand_in() -> dg.MaterializeResult:
    """Stands for ``events``: what makes the run partitioned, as in daily_events_job."""
    return dg.MaterializeResult()


def payloads(day: date, count: int, batch: str, **overrides) -> list[dict]:
    """``count`` events on ``day``; an override of None leaves the field out, a dict value replaces ``properties``."""
    rows = []
    for number in range(count):
        payload = {
            "id": f"{batch}-{number}",
            "type": "product_view",
            "timestamp": f"{day.isoformat()}T10:{number % 60:02d}:00Z",
            "user_id": f"u{number % 3}",
            "price": 9.5 + number,
            "properties": {"sku": f"sku-{number}", "color": "red"},
        }
        for name, value in overrides.items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value(number) if callable(value) else value
        rows.append(payload)
    return rows


@pytest.fixture
def run_check(warehouse_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ETL_DRIFT_MIN_ROWS", str(MIN_ROWS))
    monkeypatch.setenv("ETL_QUALITY_SAMPLE_ROWS", "100")
    definitions = dg.Definitions(
        assets=[dg.AssetSpec("staging_events"), partitioned_stand_in],
        asset_checks=[schema_drift],
        jobs=[
            dg.define_asset_job(
                "drift_job",
                selection=dg.AssetSelection.assets(partitioned_stand_in) | dg.AssetSelection.checks(schema_drift),
            ),
            dg.define_asset_job("unpartitioned_drift_job", selection=dg.AssetSelection.checks(schema_drift)),
        ],
        resources={"warehouse": WarehouseResource(database_url=warehouse_url), "settings": Settings.from_env()},
    )

    def run(day: date | None = None, *, last: date | None = None) -> dg.AssetCheckEvaluation:
        if day is None:
            result = definitions.resolve_job_def("unpartitioned_drift_job").execute_in_process()
        elif last is None:
            result = definitions.resolve_job_def("drift_job").execute_in_process(partition_key=day.isoformat())
        else:
            result = definitions.resolve_job_def("drift_job").execute_in_process(
                tags={ASSET_PARTITION_RANGE_START_TAG: day.isoformat(), ASSET_PARTITION_RANGE_END_TAG: last.isoformat()}
            )
        assert result.success
        [evaluation] = result.get_asset_check_evaluations()
        return evaluation

    return run


def metadata(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {key: value.value for key, value in evaluation.metadata.items()}


def test_the_profile_counts_fields_and_types_per_source_in_sql(warehouse_engine: Engine):
    day = date(2025, 3, 1)
    rows = payloads(day, 6, "b1", price=lambda n: None if n == 0 else 1.5, coupon=lambda n: "X" if n < 2 else None)
    rows[0]["properties"] = {"sku": 7, "tags": ["a"], "nested": {"deep": 1}}
    stage_payloads(warehouse_engine, "b1", rows)
    stage_payloads(warehouse_engine, "other-day", payloads(day + timedelta(days=1), 3, "other"))
    with warehouse_engine.connect() as conn:
        profiles = profile_fields(conn, [day])
        sampled = profile_fields(conn, [day], sample_every=2)
    [profile] = profiles.values()
    assert (profile.source, profile.rows) == ("s3", 6)
    assert profile.fields["price"] == FieldProfile(6, frozenset({"number"}))  # a null value is held, untyped
    assert profile.fields["coupon"] == FieldProfile(6, frozenset({"string"}))
    assert profile.fields["properties"] == FieldProfile(6, frozenset({"object"}))
    assert profile.fields["properties.sku"] == FieldProfile(6, frozenset({"string", "number"}))
    assert profile.fields["properties.color"] == FieldProfile(5, frozenset({"string"}))
    assert profile.fields["properties.tags"] == FieldProfile(1, frozenset({"array"}))
    assert profile.fields["properties.nested"] == FieldProfile(1, frozenset({"object"}))
    assert "properties.nested.deep" not in profile.fields
    assert sampled["s3"].rows == 3


def test_recording_unions_types_and_widens_the_seen_days(warehouse_engine: Engine):
    first, second = date(2025, 3, 2), date(2025, 3, 1)
    stage_payloads(warehouse_engine, "b1", payloads(first, 2, "b1"))
    stage_payloads(warehouse_engine, "b2", payloads(second, 2, "b2", price=lambda n: str(n)))
    with warehouse_engine.begin() as conn:
        record_profile(conn, profile_fields(conn, [first]), first)
        record_profile(conn, profile_fields(conn, [second]), second)
        known = known_fields(conn, ["s3", "nobody"])
        [price_row] = conn.execute(select(source_fields).where(source_fields.c.field == "price")).mappings()
    assert known["nobody"] == {}
    assert known["s3"]["price"].json_types == {"number", "string"}
    assert (known["s3"]["price"].first_seen_day, known["s3"]["price"].last_seen_day) == (second, first)
    assert price_row["json_types"] == ["number", "string"]
    assert price_row["last_seen_at"] >= price_row["first_seen_at"]


def test_drift_is_warned_day_by_day(warehouse_engine: Engine, run_check):
    days = [date(2025, 3, 1) + timedelta(days=offset) for offset in range(4)]

    stage_payloads(warehouse_engine, "d1", payloads(days[0], 8, "d1"))
    baseline = run_check(days[0])
    assert baseline.passed
    assert baseline.severity == dg.AssetCheckSeverity.WARN
    assert metadata(baseline)["baseline sources"] == "s3"
    assert metadata(baseline)["rows profiled"] == 8
    assert metadata(baseline)["sampled"] is False

    stage_payloads(warehouse_engine, "d2", payloads(days[1], 8, "d2", new_field=lambda n: f"v{n}"))
    added = run_check(days[1])
    assert not added.passed
    assert added.severity == dg.AssetCheckSeverity.WARN
    counts = metadata(added)
    assert (counts["new fields"], counts["vanished fields"], counts["changed types"]) == (1, 0, 0)
    assert "| 2025-03-02 | s3 | new_field | new | string | 8 |" in metadata(added)["changes"]
    with warehouse_engine.connect() as conn:
        kept = conn.scalars(
            text("SELECT payload->>'new_field' FROM staging_events WHERE batch_id = 'd2' ORDER BY record_no")
        ).all()
    assert kept == [f"v{n}" for n in range(8)]

    gone = payloads(days[2], MIN_ROWS, "d3", new_field="v", properties={"sku": "x"})
    stage_payloads(warehouse_engine, "d3", gone)
    vanished = run_check(days[2])
    assert not vanished.passed
    assert metadata(vanished)["vanished fields"] == 1
    assert metadata(vanished)["new fields"] == 0
    assert (
        "| 2025-03-03 | s3 | properties.color | vanished (last seen 2025-03-02) | string | 0 |"
        in (metadata(vanished)["changes"])
    )

    stage_payloads(warehouse_engine, "d4", payloads(days[3], 8, "d4", new_field="v", price=lambda n: f"{n}.50"))
    retyped = run_check(days[3])
    assert not retyped.passed
    assert (metadata(retyped)["changed types"], metadata(retyped)["new fields"]) == (1, 0)
    assert "| 2025-03-04 | s3 | price | type changed | number → +string | 8 |" in metadata(retyped)["changes"]


def test_a_small_day_does_not_report_vanished_fields(warehouse_engine: Engine, run_check):
    stage_payloads(warehouse_engine, "d1", payloads(date(2025, 3, 1), 8, "d1"))
    assert run_check(date(2025, 3, 1)).passed
    stage_payloads(warehouse_engine, "d2", payloads(date(2025, 3, 2), MIN_ROWS - 1, "d2", price=None))
    small = run_check(date(2025, 3, 2))
    assert small.passed
    assert metadata(small)["vanished fields"] == 0


def test_a_range_run_compares_each_day_with_the_one_before(warehouse_engine: Engine, run_check):
    first, second = date(2025, 3, 1), date(2025, 3, 2)
    stage_payloads(warehouse_engine, "d1", payloads(first, 8, "d1"))
    stage_payloads(warehouse_engine, "d2", payloads(second, 8, "d2", coupon="C"))
    evaluation = run_check(first, last=second)
    assert not evaluation.passed
    assert metadata(evaluation)["days"] == "2025-03-01, 2025-03-02"
    assert metadata(evaluation)["baseline sources"] == "s3"
    assert metadata(evaluation)["new fields"] == 1
    assert "| 2025-03-02 | s3 | coupon | new | string | 8 |" in metadata(evaluation)["changes"]


def test_a_day_larger_than_the_sample_size_is_profiled_on_an_even_sample(warehouse_engine: Engine, run_check):
    day = date(2025, 3, 1)
    stage_payloads(warehouse_engine, "big", payloads(day, 150, "big"))
    evaluation = run_check(day)
    assert metadata(evaluation)["sampled"] is True
    assert metadata(evaluation)["sampling"] == "2025-03-01: 1 row in 2 (id % 2 = 0)"
    assert 70 <= metadata(evaluation)["rows profiled"] <= 80


def test_an_unpartitioned_run_profiles_the_days_ingested_in_the_last_day(warehouse_engine: Engine, run_check):
    stage_payloads(warehouse_engine, "d1", payloads(date(2025, 3, 1), 3, "d1"))
    stage_payloads(warehouse_engine, "d2", payloads(date(2025, 3, 5), 3, "d2"))
    evaluation = run_check()
    assert evaluation.passed
    assert metadata(evaluation)["days"] == "2025-03-01, 2025-03-05"
    assert metadata(evaluation)["rows profiled"] == 6


def test_rerunning_a_recorded_day_compares_it_with_itself(warehouse_engine: Engine, run_check):
    """Drift is reported by the run that first profiles it; the profile it recorded is what comes next."""
    stage_payloads(warehouse_engine, "d1", payloads(date(2025, 3, 1), 8, "d1"))
    run_check(date(2025, 3, 1))
    stage_payloads(warehouse_engine, "d2", payloads(date(2025, 3, 2), 8, "d2", coupon="C"))
    assert not run_check(date(2025, 3, 2)).passed
    assert run_check(date(2025, 3, 2)).passed


def test_daily_events_job_runs_the_check_on_its_days(definitions, warehouse_engine: Engine):
    """The real code location's job; other steps' outcomes are their own tests' business."""
    stage_payloads(warehouse_engine, "d1", payloads(date(2025, 3, 1), 8, "d1"))
    job = definitions.resolve_job_def("daily_events_job")
    result = job.execute_in_process(partition_key="2025-03-01", raise_on_error=False)
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "schema_drift"]
    assert evaluation.passed
    assert metadata(evaluation)["days"] == "2025-03-01"
    assert metadata(evaluation)["baseline sources"] == "s3"

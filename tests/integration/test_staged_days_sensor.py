"""staged_days_sensor on a real warehouse: a run per range of consecutive pending days, keyed by their rows."""

from datetime import timedelta

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from sqlalchemy import text

from etl_assets.orchestration import failed_days
from tests.conftest import TEST_PII_KEY
from tests.harness import pipeline, stage_payloads


def stage(engine, batch_id: str, *timestamps: str, replay: bool = False) -> None:
    payloads = [
        {"id": f"{batch_id}-{n}", "type": "page_view", "timestamp": ts, "user": {"id": "u"}}
        for n, ts in enumerate(timestamps)
    ]
    stage_payloads(engine, batch_id, payloads, replay=replay)


def ranges(requests: list[dg.RunRequest]) -> list[tuple[str, str]]:
    return [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests
    ]


def test_pending_days_become_one_run_per_consecutive_range(definitions, warehouse_engine):
    stage(warehouse_engine, "a", "2025-08-01T10:00:00Z", "2025-08-02T10:00:00Z", "2025-08-05T10:00:00Z")
    with pipeline(definitions) as run:
        first = run.tick("staged_days_sensor")
        assert ranges(first) == [("2025-08-01", "2025-08-02"), ("2025-08-05", "2025-08-05")]
        assert [r.run_key for r in run.tick("staged_days_sensor")] == [r.run_key for r in first]

        stage(
            warehouse_engine, "a", "2025-08-01T10:00:00Z", "2025-08-02T10:00:00Z", "2025-08-05T10:00:00Z", replay=True
        )
        replayed = run.tick("staged_days_sensor")
        assert ranges(replayed) == ranges(first)
        assert {r.run_key for r in replayed}.isdisjoint({r.run_key for r in first})


def test_days_merge_in_parallel_but_a_day_waits_for_its_own_run_in_flight(definitions, warehouse_engine):
    stage(warehouse_engine, "a", "2025-08-01T10:00:00Z")
    stage(warehouse_engine, "b", "2025-08-03T10:00:00Z")
    busy = {ASSET_PARTITION_RANGE_START_TAG: "2025-08-01", ASSET_PARTITION_RANGE_END_TAG: "2025-08-02"}
    with pipeline(definitions) as run:
        run.instance.add_run(dg.DagsterRun(job_name="daily_events_job", status=dg.DagsterRunStatus.STARTED, tags=busy))
        sensor = definitions.resolve_sensor_def("staged_days_sensor")
        with dg.build_sensor_context(instance=run.instance, resources=definitions.resources) as context:
            result = sensor(context)
        assert [request.tags[ASSET_PARTITION_RANGE_START_TAG] for request in result.run_requests] == ["2025-08-03"]
        run.instance.add_run(
            dg.DagsterRun(
                job_name="daily_events_job",
                status=dg.DagsterRunStatus.STARTING,
                tags={ASSET_PARTITION_RANGE_START_TAG: "2025-08-03", ASSET_PARTITION_RANGE_END_TAG: "2025-08-03"},
            )
        )
        with dg.build_sensor_context(instance=run.instance, resources=definitions.resources) as context:
            result = sensor(context)
        assert isinstance(result, dg.SkipReason)
        assert "still merging" in result.skip_message


def execute(run, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Run a request of the sensor as the daemon would, failing or not."""
    job = run.definitions.resolve_job_def("daily_events_job")
    tags = {**request.tags, "dagster/run_key": request.run_key}
    return job.execute_in_process(instance=run.instance, tags=tags, raise_on_error=False)


def skip_reason(run) -> str:
    sensor = run.definitions.resolve_sensor_def("staged_days_sensor")
    with dg.build_sensor_context(instance=run.instance, resources=run.definitions.resources) as context:
        result = sensor(context)
    assert isinstance(result, dg.SkipReason), result
    return result.skip_message


def count_events(engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM events"))


def test_a_failed_merge_is_requested_again_after_its_delay_and_then_loads(definitions, warehouse_engine, monkeypatch):
    """The merge fails for want of a PII key; once its delay has passed (and the key is set) the same pending rows
    run again under a key of their own, and load."""
    payload = {
        "id": "pii-1",
        "type": "page_view",
        "timestamp": "2025-08-01T10:00:00Z",
        "user": {"id": "u"},
        "email": "ann@example.com",
    }
    monkeypatch.delenv("ETL_PII_KEY")
    stage_payloads(warehouse_engine, "with-pii", [payload, {**payload, "id": "pii-2"}])  # staged untransformed
    with pipeline(definitions) as run:
        [first] = run.tick("staged_days_sensor")
        assert not execute(run, first).success
        assert "its last run failed; tried again in" in skip_reason(run)

        monkeypatch.setenv("ETL_PII_KEY", TEST_PII_KEY)
        monkeypatch.setattr(failed_days, "RETRY_DELAYS", (timedelta(0),))
        [again] = run.tick("staged_days_sensor")
        assert again.run_key == f"{first.run_key}#retry-1"
        assert again.tags["etl/pending_key"] == first.run_key
        assert execute(run, again).success
        assert count_events(warehouse_engine) == 2
        assert run.tick("staged_days_sensor") == []


def test_a_held_source_is_not_requested_again_until_its_day_has_new_rows(definitions, warehouse_engine, monkeypatch):
    payloads = [
        {"id": f"bad-{n}", "type": "page_view", "timestamp": "2025-08-01T10:00:00Z", "user": {"id": "u"}}
        | ({"price": -1} if n % 2 else {})
        for n in range(200)
    ]  # half of them with a negative price: far past the share the staging gate tolerates
    stage_payloads(warehouse_engine, "bad-day", payloads, source="segment:app")
    monkeypatch.setattr(failed_days, "RETRY_DELAYS", (timedelta(0),))
    with pipeline(definitions) as run:
        [first] = run.tick("staged_days_sensor")
        result = execute(run, first)
        assert result.success  # a hold is the gate's verdict on one source, not a failed run
        [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "staged_day_valid"]
        assert not evaluation.passed
        reason = skip_reason(run)
        assert "its last run succeeded" in reason
        assert "Held back by the staging gate (re-drive the day once fixed): segment:app on 2025-08-01" in reason
        assert count_events(warehouse_engine) == 0

        stage(warehouse_engine, "good", "2025-08-01T11:00:00Z")  # another source's new row of the same day
        [second] = run.tick("staged_days_sensor")
        assert second.run_key != first.run_key
        assert execute(run, second).success
        assert count_events(warehouse_engine) == 1
        assert "segment:app on 2025-08-01" in skip_reason(run)

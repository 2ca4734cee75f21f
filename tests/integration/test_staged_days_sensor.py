"""staged_days_sensor on a real warehouse: a run per range of consecutive pending days, keyed by their rows."""

import dagster as dg

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


def test_the_sensor_waits_while_a_merge_run_is_in_flight(definitions, warehouse_engine):
    stage(warehouse_engine, "a", "2025-08-01T10:00:00Z")
    with pipeline(definitions) as run:
        run.instance.add_run(dg.DagsterRun(job_name="daily_events_job", status=dg.DagsterRunStatus.STARTED))
        sensor = definitions.resolve_sensor_def("staged_days_sensor")
        with dg.build_sensor_context(instance=run.instance, resources=definitions.resources) as context:
            result = sensor(context)
        assert isinstance(result, dg.SkipReason)
        assert "still merging" in result.skip_message

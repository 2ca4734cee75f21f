"""Backfills by date and replays, through Dagster's own command line and the real code location.

A 7-day backfill of events and its enrichment runs as one run (BackfillPolicy.single_run) and
materializes each day of each asset once; a replay after a change to the transform updates exactly
the rows the change affects.
"""

import os
import subprocess
import sys
from datetime import date, timedelta

import dagster as dg
from sqlalchemy import text

from etl_assets.demo.landing_files import demo_landing_set
from etl_assets.transform import staged
from tests.harness import pipeline, table_rows

DAILY_ASSETS = ("events", "user_daily_activity", "sessions", "daily_funnel", "product_daily_sales")
FIRST, LAST = date(2025, 8, 1), date(2025, 8, 7)


def put_demo_files(s3, bucket: str) -> None:
    for name, body, _ in demo_landing_set(seed=7, start=FIRST, days=7, events_per_file=250, files=7):
        s3.put_object(Bucket=bucket, Key=f"landing/{name}", Body=body)


def test_a_seven_day_backfill_is_one_run_and_each_day_materializes_once(
    definitions, pipeline_env, s3, buckets, warehouse_engine, tmp_path, project_root
):
    put_demo_files(s3, buckets["landing"])
    with pipeline(definitions) as run:
        run.tick_and_run("landing_files_sensor")
    home = tmp_path / "dagster_home"
    home.mkdir()
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "etl_assets.definitions",
        "--select",
        ",".join(DAILY_ASSETS),
        "--partition-range",
        f"{FIRST.isoformat()}...{LAST.isoformat()}",
    ]
    finished = subprocess.run(
        command,
        cwd=project_root,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1
        assert runs[0].tags["dagster/asset_partition_range_start"] == FIRST.isoformat()
        for asset in DAILY_ASSETS:
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
            partitions = sorted(record.partition_key for record in records)
            expected = [(FIRST + timedelta(days=offset)).isoformat() for offset in range(7)]
            assert partitions == expected, asset

    with warehouse_engine.connect() as conn:
        days = (
            conn.execute(
                text(
                    "SELECT DISTINCT (occurred_at AT TIME ZONE 'UTC')::date FROM events "
                    "WHERE occurred_at >= :first AND occurred_at < :end ORDER BY 1"
                ),
                {"first": FIRST, "end": LAST + timedelta(days=1)},
            )
            .scalars()
            .all()
        )
        pending = conn.scalar(
            text("SELECT count(*) FROM staging_status WHERE status = 'pending' AND event_day BETWEEN :first AND :last"),
            {"first": FIRST, "last": LAST},
        )
        funnel_days = conn.execute(text("SELECT day FROM daily_funnel ORDER BY day")).scalars().all()
    assert days == [FIRST + timedelta(days=offset) for offset in range(7)]
    assert pending == 0
    assert funnel_days == days


def received_days(engine) -> tuple[str, str]:
    """The first and last UTC day on which the warehouse received a batch."""
    with engine.connect() as conn:
        first, last = conn.execute(
            text(
                "SELECT min(received_at AT TIME ZONE 'UTC')::date, max(received_at AT TIME ZONE 'UTC')::date "
                "FROM raw_batches"
            )
        ).one()
    return first.isoformat(), last.isoformat()


def test_a_replay_after_a_transform_change_updates_the_rows_it_affects(
    definitions, s3, buckets, warehouse_engine, monkeypatch
):
    put_demo_files(s3, buckets["landing"])
    with pipeline(definitions) as run:
        run.settle()
        before = {row["event_id"]: row for row in table_rows(warehouse_engine, "events", "event_id")}
        assert any(row["product_id"] for row in before.values())

        original = staged.normalize  # the transform ingest runs, a replay included

        def upper_cased_product_ids(payload, accepted):
            event = original(payload, accepted)
            if event.product_id is None:
                return event
            return original({**payload, "product_id": event.product_id.upper()}, accepted)

        monkeypatch.setattr(staged, "normalize", upper_cased_product_ids)
        first_day, last_day = received_days(warehouse_engine)  # not "today": a run may cross UTC midnight
        replay = definitions.resolve_job_def("replay_job").execute_in_process(
            instance=run.instance,
            run_config={"ops": {"replay_archived_batches": {"config": {"first_day": first_day, "last_day": last_day}}}},
        )
        assert replay.success
        run.tick_and_run("staged_days_sensor")

    after = {row["event_id"]: row for row in table_rows(warehouse_engine, "events", "event_id")}
    assert after.keys() == before.keys()
    for event_id, row in after.items():
        old = before[event_id]
        if old["product_id"]:
            assert row["product_id"] == old["product_id"].upper()
            assert row["content_hash"] != old["content_hash"]
        else:
            assert row == old  # untouched: not even loaded_at moved
    sold = {row["product_id"] for row in table_rows(warehouse_engine, "product_daily_sales", "day, product_id")}
    assert sold and all(product_id == product_id.upper() for product_id in sold)

"""Drives the real code location in-process: evaluates its sensors and executes the runs they request.

Run keys are honoured as the sensor daemon honours them: a request whose run key already ran is
skipped, so "the same file never runs twice" is observable here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import orjson
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.transform.pii import PiiPolicy
from etl_assets.transform.records import ParsedRecord
from etl_assets.warehouse.merge import MergeCounts, MergeOptions, merge_days
from etl_assets.warehouse.migrate import alembic_config
from etl_assets.warehouse.schema import DAILY_TABLES
from etl_assets.warehouse.staging import StagingCounts, record_batch, stage_records


class Pipeline:
    def __init__(self, definitions: dg.Definitions, instance: dg.DagsterInstance) -> None:
        self.definitions = definitions
        self.instance = instance
        self.cursors: dict[str, str | None] = {}
        self.run_keys: set[str] = set()
        self.runs: list[dg.ExecuteInProcessResult] = []

    def tick(self, sensor_name: str, cursor: str | None = None) -> list[dg.RunRequest]:
        """Evaluate a sensor once (from its stored cursor unless one is given); return its run requests."""
        sensor = self.definitions.resolve_sensor_def(sensor_name)
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=cursor if cursor is not None else self.cursors.get(sensor_name),
            definitions=self.definitions,
            resources=self.definitions.resources,
            sensor_name=sensor_name,
        ) as context:
            result = sensor(context)
        if isinstance(result, dg.SkipReason):
            return []
        if result.cursor is not None:
            self.cursors[sensor_name] = result.cursor
        return list(result.run_requests or [])

    def execute(self, sensor_name: str, requests: list[dg.RunRequest]) -> list[dg.ExecuteInProcessResult]:
        job = self.definitions.resolve_job_def(self.definitions.resolve_sensor_def(sensor_name).job_name)
        results = []
        for request in requests:
            if request.run_key is not None:
                if request.run_key in self.run_keys:
                    continue
                self.run_keys.add(request.run_key)
            run_key_tag = {"dagster/run_key": request.run_key} if request.run_key is not None else {}
            result = job.execute_in_process(
                run_config=request.run_config, instance=self.instance, tags={**request.tags, **run_key_tag}
            )
            assert result.success
            results.append(result)
        self.runs.extend(results)
        return results

    def check_evaluations(self, check_name: str, job_to_run: str | None = None) -> list[dg.AssetCheckEvaluation]:
        """The evaluations of ``check_name`` in the runs so far (after running ``job_to_run`` once, if given)."""
        if job_to_run is not None:
            result = self.definitions.resolve_job_def(job_to_run).execute_in_process(instance=self.instance)
            assert result.success
            self.runs.append(result)
        return [
            evaluation
            for result in self.runs
            for evaluation in result.get_asset_check_evaluations()
            if evaluation.check_name == check_name
        ]

    def tick_and_run(self, sensor_name: str, cursor: str | None = None) -> list[dg.ExecuteInProcessResult]:
        return self.execute(sensor_name, self.tick(sensor_name, cursor))

    def settle(self) -> None:
        """Ingest every new landing file, then merge every day with pending rows, as the two sensors would."""
        self.tick_and_run("landing_files_sensor")
        self.tick_and_run("staged_days_sensor")


@contextmanager
def pipeline(definitions: dg.Definitions) -> Iterator[Pipeline]:
    with dg.instance_for_test() as instance:
        yield Pipeline(definitions, instance)


ACCEPTED = AcceptedTimes(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def stage_payloads(
    engine: Engine,
    batch_id: str,
    payloads: list[dict],
    *,
    replay: bool = False,
    accepted: AcceptedTimes = ACCEPTED,
    source: str = "s3",
) -> StagingCounts:
    """Enter a batch in the ledger and stage ``payloads`` as its records, as an ingest run from ``source`` would."""
    record_batch(
        engine,
        batch_id=batch_id,
        source=source,
        source_uri=f"s3://b/{batch_id}",
        archive_key=None,
        sha256="0" * 64,
        byte_count=1,
    )
    records = [
        ParsedRecord(number, payload, orjson.dumps(payload).decode()) for number, payload in enumerate(payloads, 1)
    ]
    return stage_records(engine, batch_id, source, records, accepted, replay=replay)


def merge_day(
    engine: Engine,
    day: date,
    *,
    pii: PiiPolicy | None = None,
    reprocess_all: bool = False,
    redrive: bool = False,
    release_held: bool = False,
) -> MergeCounts:
    """Merge one day's waiting staged rows, as the ``events`` asset does (without a PII key unless given)."""
    options = MergeOptions(
        ACCEPTED, pii or PiiPolicy(), reprocess_all=reprocess_all, redrive=redrive, release_held=release_held
    )
    return merge_days(engine, [day], options)


def table_rows(engine: Engine, table: str, order_by: str, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY {order_by}")).mappings().all()
    return [{key: value for key, value in row.items() if key not in exclude} for row in rows]


def warehouse_snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row a user can see in events, quarantine and the daily tables (ids and arrival times aside)."""
    snapshot = {
        "events": table_rows(engine, "events", "event_id"),
        "event_ledger": table_rows(engine, "event_ledger", "event_id"),
        "quarantine": table_rows(engine, "quarantine", "batch_id, record_no, stage", exclude=("id", "quarantined_at")),
        "staging_events": table_rows(
            engine, "staging_events", "batch_id, record_no", exclude=("processed_at", "attempts")
        ),
    }
    for table in DAILY_TABLES:
        key = ", ".join(column.name for column in table.primary_key.columns)
        snapshot[table.name] = table_rows(engine, table.name, key)
    return snapshot


def head_revision() -> str | None:
    """The newest revision of the migration chain: what an upgraded database must be at."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()

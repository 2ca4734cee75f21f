"""The measured paths, each run in a fresh process (``python -m etl_assets.bench.paths NAME ARGS``).

A path runs exactly the code the assets run: ``ingest_landing_object`` (the ``staging_events`` asset),
``merge_days`` over the transform (the ``events`` asset's write), ``replace_window`` with the enrichment
queries (the daily tables' write). The process prints one JSON line: rows, seconds of the work alone (not
the imports), its peak resident memory as the kernel counts it, and what the path counted.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import DeclarativeBase, Session

from etl_assets.settings import Settings, pii_policy
from etl_assets.sources.landing import LandingObject
from etl_assets.sources.landing_ingest import ingest_landing_object
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.days import day_start
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets.warehouse.enrichment import (
    daily_funnel_query,
    product_daily_sales_query,
    sessions_query,
    user_daily_activity_query,
)
from etl_assets.warehouse.merge import EVENT_COLUMNS, MergeOptions, merge_days
from etl_assets.warehouse.rebuild import replace_window
from etl_assets.warehouse.schema import daily_funnel, events, product_daily_sales, sessions, user_daily_activity
from etl_assets.warehouse.staging import pending_days

SOURCE_TABLE = "bench_event_rows"
"""A copy of some normalized events, the input of the tutorial paths (which insert rows that are ready)."""
ACCEPTED = AcceptedTimes.through_today(date(2000, 1, 1), datetime.now(UTC))
ENRICHMENT = (
    (user_daily_activity, user_daily_activity_query),
    (sessions, sessions_query),
    (daily_funnel, daily_funnel_query),
    (product_daily_sales, product_daily_sales_query),
)


def _engine(args: dict[str, Any]) -> Engine:
    return create_warehouse_engine(args["database_url"], pool_size=2, max_overflow=1)


def stage(args: dict[str, Any]) -> dict[str, Any]:
    """A landing file → staging: download, archive, ledger, parse, COPY (the ingest run's work)."""
    settings = Settings.from_env()
    client = s3_client(args["s3_endpoint_url"], settings.aws_region)
    obj = LandingObject(args["key"], args["etag"], args["size"])
    result = ingest_landing_object(
        client,
        _engine(args),
        obj,
        landing_bucket=args["landing_bucket"],
        archive_bucket=args["archive_bucket"],
        accepted=ACCEPTED,
    )
    counts = result.counts
    return {
        "rows": counts.records,
        "staged": counts.staged,
        "already staged": counts.already_staged,
        "already in events": counts.resent,
        "split": {
            "parse": round(counts.parse_seconds, 3),
            "re-sent check": round(counts.resent_seconds, 3),
            "transform": round(counts.transform_seconds, 3),
        },
    }


def merge(args: dict[str, Any]) -> dict[str, Any]:
    """Staging → events: every day with pending rows merged as an events run merges them, ``ETL_MERGE_DAYS_AT_ONCE``
    days at a time."""
    at_once = Settings.from_env().merge_days_at_once
    engine = create_warehouse_engine(args["database_url"], pool_size=at_once, max_overflow=1)
    days = [pending.day for pending in pending_days(engine)]
    counts = merge_days(engine, days, MergeOptions(ACCEPTED, pii_policy()), at_once=at_once)
    return {
        "split": {step: round(seconds, 3) for step, seconds in counts.seconds.items()},
        "rows": counts.received,
        "inserted": counts.inserted,
        "unchanged": counts.unchanged,
        "duplicates": counts.duplicates + counts.superseded,
        "days": len(days),
        "at once": at_once,
    }


def merge_in_parallel(args: dict[str, Any]) -> dict[str, Any]:
    """Staging → events with ``workers`` day merges at a time (``merge_days(at_once=…)``, as an events run does), each
    day in a transaction of its own."""
    workers = int(args["workers"])
    engine = create_warehouse_engine(args["database_url"], pool_size=workers, max_overflow=1)
    days = [pending.day for pending in pending_days(engine)]
    counts = merge_days(engine, days, MergeOptions(ACCEPTED, pii_policy()), at_once=workers)
    return {"rows": counts.received, "inserted": counts.inserted, "days": len(days), "workers": workers}


def whole(args: dict[str, Any]) -> dict[str, Any]:
    """The whole file → events in one process: staging, then the merge of the days it touched."""
    started = time.perf_counter()
    staged = stage(args)
    staging_seconds = time.perf_counter() - started
    merged = merge(args)
    return {
        "rows": staged["rows"],
        "staged": staged["staged"],
        "already in events": staged["already in events"],
        "inserted": merged["inserted"],
        "days": merged["days"],
        "split": {"staging": round(staging_seconds, 3), **staged["split"], **merged["split"]},
    }


def through_the_sensor(args: dict[str, Any]) -> dict[str, Any]:
    """The files under ``args["prefix"]`` → events as the platform loads them: the real ``landing_files_sensor`` ticks
    until it asks for nothing more, each run it asks for is executed (the real ``ingest_landing_file_job``, in this
    process, one after another, on an ephemeral Dagster instance), then the days are merged. Seconds: from the first
    tick to the merge's commit (the last row in ``events``)."""
    os.environ.update(
        ETL_LANDING_BUCKET=args["landing_bucket"],
        ETL_ARCHIVE_BUCKET=args["archive_bucket"],
        ETL_LANDING_PREFIX=args["prefix"],
    )
    import dagster as dg
    from dagster._core.storage.tags import RUN_KEY_TAG

    from etl_assets.definitions import defs
    from etl_assets.defs.ingest import requested_objects

    definitions = defs()
    sensor = definitions.resolve_sensor_def("landing_files_sensor")
    assert sensor.job_name is not None
    job = definitions.resolve_job_def(sensor.job_name)
    ticks = runs = files = 0
    cursor: str | None = None
    with dg.DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        while True:
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, definitions=definitions, resources=definitions.resources
            ) as context:
                result = sensor(context)
            assert isinstance(result, dg.SensorResult)
            ticks += 1
            cursor = result.cursor
            if not result.run_requests:
                break
            for request in result.run_requests:
                assert request.run_key is not None
                tags = {**request.tags, RUN_KEY_TAG: request.run_key}
                ran = job.execute_in_process(run_config=request.run_config, instance=instance, tags=tags)
                if not ran.success:
                    raise RuntimeError(f"the ingest run {request.run_key} failed")
                runs += 1
                files += len(requested_objects(request.run_config))
        staged_at = time.perf_counter()
        merged = merge(args)
        seconds = time.perf_counter() - started
    return {
        "rows": merged["rows"],
        "seconds": seconds,
        "inserted": merged["inserted"],
        "files": files,
        "runs": runs,
        "ticks": ticks,
        "ingest seconds": round(staged_at - started, 3),
        "merge seconds": round(seconds - (staged_at - started), 3),
        "days": merged["days"],
    }


def enrichment(args: dict[str, Any]) -> dict[str, Any]:
    """A day's four daily tables rebuilt from ``events`` (rows: the day's events read)."""
    engine = _engine(args)
    day = date.fromisoformat(args["day"])
    start = day_start(day)
    window = select(events).where(events.c.occurred_at >= start, events.c.occurred_at < start + timedelta(days=1))
    with engine.connect() as conn:
        rows = conn.scalar(select(func.count()).select_from(window.subquery()))
    written = 0
    for table, query in ENRICHMENT:
        written += replace_window(engine, table, query(window), (day, day + timedelta(days=1)))[1]
    return {"rows": rows, "written": written}


def _source_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [
            dict(row) for row in conn.execute(text(f"SELECT {', '.join(EVENT_COLUMNS)} FROM {SOURCE_TABLE}")).mappings()
        ]


def orm_add(args: dict[str, Any]) -> dict[str, Any]:
    """The tutorial's way: one ORM object per event, ``session.add``, one commit (rows come from a copy of events)."""
    engine = _engine(args)
    rows = _source_rows(engine)

    class Base(DeclarativeBase):
        pass

    class Event(Base):
        __table__ = events

    started = time.perf_counter()
    with Session(engine) as session:
        for row in rows:
            session.add(Event(**row))
        session.commit()
    return {"rows": len(rows), "seconds": time.perf_counter() - started}


def core_executemany(args: dict[str, Any]) -> dict[str, Any]:
    """SQLAlchemy Core ``insert(events)`` with a list of parameter sets (executemany), one transaction."""
    engine = _engine(args)
    rows = _source_rows(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(events), rows)
    return {"rows": len(rows), "seconds": time.perf_counter() - started}


PATHS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "stage": stage,
    "merge": merge,
    "whole": whole,
    "merge_in_parallel": merge_in_parallel,
    "sensor": through_the_sensor,
    "enrichment": enrichment,
    "orm": orm_add,
    "core": core_executemany,
}


def peak_rss_mb() -> float:
    """This process's own peak resident memory: the kernel's high-water mark of its address space (``VmHWM``).

    Not ``ru_maxrss``: Linux carries into it the parent's peak from before ``exec`` (the bench process holds the
    threaded S3 server of the sensor bench, or has just uploaded a large file), which would hide the child's own.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    name, args = sys.argv[1], json.loads(sys.argv[2])
    started, cpu_started = time.perf_counter(), time.process_time()
    outcome = PATHS[name](args)
    outcome.setdefault("seconds", time.perf_counter() - started)
    outcome["cpu_seconds"] = time.process_time() - cpu_started
    outcome["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()

"""One benchmark run: the servers, the seeded input, every path and reference in order, on one database.

Every platform path starts from the state it needs (``_reset`` empties the pipeline's tables; a CHECKPOINT
before each measured step keeps one step's dirty pages from being written during the next) and runs in a
process of its own, so its seconds and its peak memory are its own. Each path is measured ``repeat`` times
and the median is kept; the references are measured as often, in the same run, on the same server.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from etl_assets.bench import cpu
from etl_assets.bench.references import Psql, copy_events, copy_staging, export_events, export_staging
from etl_assets.bench.sensor import SensorTicks
from etl_assets.bench.sensor import measure as measure_sensor
from etl_assets.demo.landing_files import write_large_file
from etl_assets.settings import Settings
from etl_assets.sources.s3 import s3_client
from etl_assets.warehouse import migrate
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets.warehouse.merge import EVENT_COLUMNS

BENCH_DATABASE = "etl_bench"
LANDING_BUCKET = "bench-landing"
ARCHIVE_BUCKET = "bench-archive"
FIRST_DAY = date(2025, 8, 1)
WORKLOAD_DAYS = 2
ONE_FILE_PREFIX = "landing/one-file/"
SMALL_FILES_PREFIX = "landing/small-files/"
BENCH_PII_KEY = "bench-only-pii-key-0123456789abcdef"
PIPELINE_TABLES = (
    "staging_events",
    "batch_days",
    "quarantine",
    "raw_batches",
    "event_ledger",
    "events",
    "order_lines",
    "users",
    "identity_links",
    "group_memberships",
    "rebuild_requests",
    "held_sources",
    "user_daily_activity",
    "sessions",
    "daily_funnel",
    "product_daily_sales",
)

CONCURRENT_DAYS = 4
MERGE_WORKERS = (1, 2, 4)
MERGE_OUTPUT_TABLES = (
    "events",
    "event_ledger",
    "order_lines",
    "users",
    "identity_links",
    "group_memberships",
    "rebuild_requests",
)
UNMERGE_BATCH_DAYS = "UPDATE batch_days SET merged_rows = 0, merged_through = 0, merged_at = NULL"
"""Staged rows back to waiting, as before any merge: the concurrent merges start from the same staging."""


@dataclass(frozen=True)
class BenchOptions:
    events: int = 200_000
    seed: int = 7
    repeat: int = 3
    tutorial_events: int = 50_000
    memory_events: tuple[int, ...] = ()
    sensor_seen: int = 100_000
    sensor_new: int = 1_000
    small_files: int | None = None
    """Landing files of ``small_file_events`` events each for the many-small-files path (None: ``events`` ÷ 200;
    0: not measured)."""
    small_file_events: int = 100
    database_url: str | None = None
    work_dir: Path | None = None

    @property
    def small_files_count(self) -> int:
        return max(2, self.events // 200) if self.small_files is None else self.small_files


@dataclass
class PathResult:
    """A measured path: its median seconds over the repeats, the rows it handled, its process's peak memory."""

    name: str
    rows: int
    samples: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return statistics.median(self.samples)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def add(self, seconds: float, peak_rss_mb: float = 0.0) -> None:
        self.samples.append(seconds)
        self.peak_rss_mb = max(self.peak_rss_mb, peak_rss_mb)


@dataclass
class BenchResult:
    options: BenchOptions
    machine: dict[str, Any]
    paths: dict[str, PathResult]
    memory: dict[int, float]
    sensor: SensorTicks | None
    seconds: float


class Step:
    """What the progress bar shows: the step under way, and one tick when it ends."""

    def __init__(self, report: Callable[[str, bool], None]) -> None:
        self.report = report

    @contextmanager
    def __call__(self, description: str) -> Iterator[None]:
        self.report(description, False)
        yield
        self.report(description, True)


def planned_steps(options: BenchOptions) -> int:
    """How many steps ``run`` reports, for the progress bar's total."""
    per_repeat = 9
    small_files = 3 if options.small_files_count else 0
    return 4 + options.repeat * per_repeat + 3 + small_files + len(options.memory_events) + 1


def run(options: BenchOptions, report: Callable[[str, bool], None]) -> BenchResult:
    started = time.perf_counter()
    step = Step(report)
    with ExitStack() as stack:
        work = options.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="etl-bench-")))
        work.mkdir(parents=True, exist_ok=True)
        with step("starting PostgreSQL and the S3 endpoint"):
            server_url, s3_endpoint, server_pid = _services(stack, options, work)
        with step("creating the bench database"):
            database_url = _fresh_database(server_url)
        bench = _Bench(options, work, database_url, s3_endpoint, server_pid)
        with step(f"writing {options.events:,} events (seed {options.seed})"):
            bench.upload_workload()
        with step("warming up"):
            bench.reset()
        for round_no in range(1, options.repeat + 1):
            bench.measure_round(round_no, step)
        with step(f"{CONCURRENT_DAYS} days merged 1, 2 and 4 at a time"):
            bench.measure_concurrent_merges()
        with step(f"ORM session.add of {bench.tutorial_rows:,} events"):
            bench.measure_tutorial("orm")
        with step(f"Core executemany of {bench.tutorial_rows:,} events"):
            bench.measure_tutorial("core")
        if options.small_files_count:
            files, each = options.small_files_count, options.small_file_events
            with step(f"writing {files:,} landing files of {each} events, and the same events in one file"):
                bench.upload_small_files()
            with step(f"one {files * each:,}-event file through the sensor, its run and the merge"):
                bench.measure_through_the_sensor("one_file")
            with step(f"{files:,} small files through the sensor, its runs and the merge"):
                bench.measure_through_the_sensor("small_files")
        for size in options.memory_events:
            with step(f"peak memory of a whole {size:,}-event file"):
                bench.measure_memory(size)
        sensor = None
        with step(f"sensor ticks over {options.sensor_seen:,} seen objects"):
            if options.sensor_seen > 0:
                bench.reset()
                sensor = measure_sensor(database_url, options.sensor_seen, options.sensor_new, bench.child_env)
        return BenchResult(
            options=options,
            machine=_machine(server_url),
            paths=bench.paths,
            memory=bench.memory,
            sensor=sensor,
            seconds=time.perf_counter() - started,
        )


def _services(stack: ExitStack, options: BenchOptions, work: Path) -> tuple[str, str, int | None]:
    """The server's URL, the S3 endpoint, and the server's pid when the bench started it (for its CPU seconds)."""
    from etl_assets.localstack.postgres import EmbeddedPostgres
    from etl_assets.localstack.processes import free_port
    from etl_assets.localstack.s3 import LocalS3

    server_pid = None
    if options.database_url:
        server_url = options.database_url
    else:
        server = EmbeddedPostgres(work / "postgres", free_port())
        server.start()
        stack.callback(server.stop)
        server_url = server.url()
        server_pid = cpu.postmaster_pid(server.data_dir)
    s3 = LocalS3(free_port(), work / "s3.log")
    s3.start()
    stack.callback(s3.stop)
    return server_url, s3.endpoint_url, server_pid


def _fresh_database(server_url: str) -> str:
    from etl_assets.settings import parse_database_url

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BENCH_DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DATABASE)))
    url = parse_database_url(server_url).set(database=BENCH_DATABASE).render_as_string(hide_password=False)
    engine = create_warehouse_engine(url, pool_size=1, max_overflow=0)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return url.replace("postgresql+psycopg://", "postgresql://")


def _value(cursor: psycopg.Cursor[Any]) -> Any:
    """The one value of a statement that returns one row (a SHOW, a count)."""
    row = cursor.fetchone()
    assert row is not None
    return row[0]


def _machine(server_url: str) -> dict[str, Any]:
    with psycopg.connect(server_url) as conn:
        server_version = _value(conn.execute("SHOW server_version"))
        shared_buffers = _value(conn.execute("SHOW shared_buffers"))
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = names[0] if names else cpu
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(memory_gb, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": server_version,
        "shared_buffers": shared_buffers,
    }


class _Bench:
    def __init__(
        self, options: BenchOptions, work: Path, database_url: str, s3_endpoint: str, server_pid: int | None
    ) -> None:
        self.options = options
        self.server_pid = server_pid
        self.work = work
        self.database_url = database_url
        self.s3_endpoint = s3_endpoint
        self.psql = Psql(database_url)
        self.paths: dict[str, PathResult] = {}
        self.memory: dict[int, float] = {}
        self.tutorial_rows = min(options.tutorial_events, options.events)
        self.client = s3_client(s3_endpoint, "us-east-1", **Settings.local_s3_client_credentials())
        self.child_env = {
            **os.environ,
            **Settings.local_s3_credentials(),
            "DATABASE_URL": database_url,
            "ETL_PII_KEY": BENCH_PII_KEY,
            "AWS_ENDPOINT_URL_S3": s3_endpoint,
        }
        for name in ("ETL_INGEST_DATABASE_URL", "ETL_TRANSFORM_DATABASE_URL", "ETL_READER_DATABASE_URL"):
            self.child_env.pop(name, None)
        self.objects: dict[str, dict[str, Any]] = {}

    def upload_workload(self) -> None:
        for bucket in (LANDING_BUCKET, ARCHIVE_BUCKET):
            self.client.create_bucket(Bucket=bucket)
        self.objects["file"] = self._upload(self.options.events, "events.jsonl")
        # The same events in a second file, as a partner that sends a file twice under another name.
        self.objects["resent"] = self._upload(self.options.events, "events-resent.jsonl")

    def _upload(self, events: int, name: str, days: int = WORKLOAD_DAYS) -> dict[str, Any]:
        path = self.work / name
        write_large_file(path, events, seed=self.options.seed, start=FIRST_DAY, days=days)
        key = f"landing/bench/{name}"
        self.client.upload_file(str(path), LANDING_BUCKET, key)
        path.unlink()
        head = self.client.head_object(Bucket=LANDING_BUCKET, Key=key)
        return {"key": key, "etag": head["ETag"].strip('"'), "size": head["ContentLength"]}

    def upload_small_files(self) -> None:
        """The same events twice: as ``small_files_count`` files of ``small_file_events`` events (the first ones
        written), and as one file."""
        files, each = self.options.small_files_count, self.options.small_file_events
        path = self.work / "small-files.jsonl"
        write_large_file(path, files * each, seed=self.options.seed, start=FIRST_DAY, days=WORKLOAD_DAYS)
        self.client.upload_file(str(path), LANDING_BUCKET, f"{ONE_FILE_PREFIX}events.jsonl")
        lines = path.read_bytes().splitlines(keepends=True)
        path.unlink()
        parts = [
            (f"{SMALL_FILES_PREFIX}part-{n:06d}.jsonl", b"".join(lines[n * each : (n + 1) * each]))
            for n in range(files)
        ]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda part: self.client.put_object(Bucket=LANDING_BUCKET, Key=part[0], Body=part[1]), parts))

    def measure_through_the_sensor(self, which: str) -> None:
        files, each = self.options.small_files_count, self.options.small_file_events
        name, prefix = {
            "one_file": (f"one {files * each:,}-event file, sensor to events", ONE_FILE_PREFIX),
            "small_files": (f"{files:,} files of {each} events, sensor to events", SMALL_FILES_PREFIX),
        }[which]
        self.reset()
        arguments = {
            "database_url": self.database_url,
            "s3_endpoint_url": self.s3_endpoint,
            "landing_bucket": LANDING_BUCKET,
            "archive_bucket": ARCHIVE_BUCKET,
            "prefix": prefix,
        }
        self.record(which, name, *self.path("sensor", arguments))
        self.reset()

    def _args(self, obj: str = "file", **extra: Any) -> dict[str, Any]:
        return {
            "database_url": self.database_url,
            "s3_endpoint_url": self.s3_endpoint,
            "landing_bucket": LANDING_BUCKET,
            "archive_bucket": ARCHIVE_BUCKET,
            **self.objects[obj],
            **extra,
        }

    def _sql(self, *statements: str) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def _count(self, table: str) -> int:
        with psycopg.connect(self.database_url) as conn:
            count: int = _value(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))))
            return count

    def checkpoint(self) -> None:
        self._sql("CHECKPOINT")

    def reset(self) -> None:
        """Empty every table the pipeline writes, as before a first load."""
        self._sql(f"TRUNCATE {', '.join(PIPELINE_TABLES)}", "CHECKPOINT")

    def path(self, name: str, args: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Run one path in a fresh process; return what it reported (with its CPU seconds and the server's) and its
        peak RSS in MB."""
        self.checkpoint()
        server_before = cpu.server_seconds(self.server_pid) if self.server_pid else None
        process = subprocess.Popen(
            [sys.executable, "-m", "etl_assets.bench.paths", name, json.dumps(args)],
            env=self.child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = process.communicate()
        server_seconds = cpu.server_seconds(self.server_pid) if self.server_pid else None
        if process.returncode != 0:
            lines = stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"bench path {name} failed: {lines[-1] if lines else 'no output'}")
        outcome = json.loads(stdout.decode().strip().splitlines()[-1])
        spent = cpu.CpuSeconds(
            float(outcome.pop("cpu_seconds")),
            None if server_seconds is None or server_before is None else server_seconds - server_before,
        )
        outcome["cpu"] = spent.as_dict()
        return outcome, float(outcome.pop("peak_rss_mb", 0.0))

    def record(self, key: str, name: str, outcome: dict[str, Any], peak: float) -> None:
        result = self.paths.setdefault(key, PathResult(name=name, rows=int(outcome["rows"])))
        result.add(float(outcome.pop("seconds")), peak)
        result.details = outcome

    def measure_round(self, round_no: int, step: Step) -> None:
        label = f"round {round_no}/{self.options.repeat}:"
        with step(f"{label} landing file → staging"):
            self.reset()
            self.record("stage", "landing file → staging", *self.path("stage", self._args()))
        staging_rows = self.work / "staging.tsv"
        events_rows = self.work / "events.tsv"
        with step(f"{label} staging → events merge"):
            if round_no == 1:
                export_staging(self.psql, staging_rows)
            self.record("merge", "staging → events merge", *self.path("merge", self._args()))
            if round_no == 1:
                export_events(self.psql, events_rows)
                self._keep_tutorial_rows()
        with step(f"{label} a day's enrichment rebuild"):
            self.record(
                "enrichment",
                "a day's enrichment rebuild (events read)",
                *self.path("enrichment", self._args(day=FIRST_DAY.isoformat())),
            )
        with step(f"{label} the same events re-sent in another file"):
            self.record("resent", "the same events in another file", *self.path("whole", self._args("resent")))
        with step(f"{label} whole file → events"):
            self.reset()
            self.record("whole", "whole file → events", *self.path("whole", self._args()))
        with step(f"{label} the same file again"):
            self.record("again", "the same file again", *self.path("whole", self._args()))
        with step(f"{label} psql \\copy into staging"):
            self._sql("TRUNCATE staging_events", "CHECKPOINT")
            seconds = copy_staging(self.psql, staging_rows)
            rows = self._count("staging_events")
            self.record("copy_staging", "psql \\copy into staging", {"rows": rows, "seconds": seconds}, 0)
        with step(f"{label} psql \\copy into events"):
            self._sql("TRUNCATE events", "CHECKPOINT")
            seconds = copy_events(self.psql, events_rows)
            rows = self._count("events")
            self.record("copy_events", "psql \\copy into events", {"rows": rows, "seconds": seconds}, 0)
        with step(f"{label} clean up"):
            self.reset()

    def _keep_tutorial_rows(self) -> None:
        from etl_assets.bench.paths import SOURCE_TABLE

        self._sql(
            f"DROP TABLE IF EXISTS {SOURCE_TABLE}",
            f"CREATE TABLE {SOURCE_TABLE} AS SELECT {', '.join(EVENT_COLUMNS)} FROM events "
            f"ORDER BY event_id LIMIT {self.tutorial_rows}",
        )

    def measure_concurrent_merges(self) -> None:
        """The same staged days merged with 1, 2 and 4 day merges at a time (staged once, un-merged between)."""
        self.objects["days"] = self._upload(self.options.events, "events-by-day.jsonl", days=CONCURRENT_DAYS)
        self.reset()
        self.path("stage", self._args("days"))
        for workers in MERGE_WORKERS:
            self._sql(f"TRUNCATE {', '.join(MERGE_OUTPUT_TABLES)}", UNMERGE_BATCH_DAYS, "CHECKPOINT")
            outcome, peak = self.path("merge_in_parallel", self._args("days", workers=workers))
            self.record(f"merge_{workers}", f"{CONCURRENT_DAYS} days' merge, {workers} at a time", outcome, peak)
        self.client.delete_object(Bucket=LANDING_BUCKET, Key=self.objects["days"]["key"])
        self.reset()

    def measure_tutorial(self, name: str) -> None:
        self._sql("TRUNCATE events")
        label = {"orm": "ORM session.add", "core": "Core executemany"}[name]
        self.record(name, label, *self.path(name, self._args()))
        self._sql("TRUNCATE events")

    def measure_memory(self, events: int) -> None:
        self.objects[f"memory-{events}"] = self._upload(events, f"events-{events}.jsonl")
        self.reset()
        outcome, peak = self.path("whole", self._args(f"memory-{events}"))
        self.memory[events] = peak
        self.record(f"memory-{events}", f"whole {events:,}-event file", outcome, peak)
        self.client.delete_object(Bucket=LANDING_BUCKET, Key=self.objects[f"memory-{events}"]["key"])
        self.reset()

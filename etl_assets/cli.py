"""The ``etl`` command: the local platform, migrations, configuration."""

from __future__ import annotations

import os
import signal
import time
from typing import NoReturn

import typer

from etl_assets.settings import VARIABLES, ConfigError, Settings, printable_value, redact

app = typer.Typer(
    help="The events platform: e-commerce events from S3 files, an HTTP API and webhooks into PostgreSQL, "
    "exactly once, orchestrated by Dagster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def say(line: str) -> None:
    typer.echo(line)


def fail(message: str) -> NoReturn:
    typer.echo(f"etl: {message}", err=True)
    raise typer.Exit(1)


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as error:
        fail(str(error))


@app.command()
def dev(
    paused: bool = typer.Option(
        False, "--paused", help="Leave the landing, staged-days and events API sensors stopped until started in the UI."
    ),
) -> None:
    """Run the whole platform locally: PostgreSQL, migrations, an S3 endpoint, the Dagster UI and daemon.

    The sensors that load the landing files, the events API and the daily tables run from the start, so the
    seeded demo week reaches daily_funnel with no click (--paused leaves them stopped). Data is kept under
    ETL_HOME (.etl/ by default), so the next `etl dev` finds it. Set DATABASE_URL or AWS_ENDPOINT_URL_S3 to use
    servers of your own instead. Ctrl-C stops everything.
    """
    from etl_assets.localstack.stack import DevStack, StackError

    settings = load_settings()

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    stack = DevStack(settings, say, paused=paused)
    error: str | None = None
    try:
        stack.up()
        say(f"ready      open {stack.dagster.url if stack.dagster else ''} ; Ctrl-C stops everything")
        stack.watch()
    except KeyboardInterrupt:
        say("stopping   …")
    except StackError as exc:
        error = str(exc)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        seconds = stack.down()
        say(f"stopped    every process in {seconds:.1f}s")
    if error:
        fail(error)


@app.command()
def migrate() -> None:
    """Upgrade the warehouse schema to the newest migration (alembic upgrade head).

    Uses DATABASE_URL, or the embedded PostgreSQL of a running `etl dev`.
    """
    import sqlalchemy.exc

    from etl_assets.warehouse import migrate as migrations
    from etl_assets.warehouse.engine import create_warehouse_engine

    settings = load_settings()
    engine = create_warehouse_engine(settings.warehouse_url, pool_size=1, max_overflow=0, ssl=settings.db_ssl_params)
    try:
        revision = migrations.upgrade(engine)
    except sqlalchemy.exc.OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else "connection failed"
        fail(
            f"cannot reach the warehouse ({redact(settings.warehouse_url)}): {reason}; start `etl dev` or set DATABASE_URL"
        )
    finally:
        engine.dispose()
    say(f"warehouse {redact(settings.warehouse_url)} at revision {revision}")


@app.command()
def collector(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 in a container)."),
) -> None:
    """Serve the collector: signed partner webhooks and the Segment-compatible tracking API.

    Listens on ETL_COLLECTOR_PORT; writes to DATABASE_URL and the archive bucket; accepts the write keys in
    ETL_SEGMENT_WRITE_KEYS and the partner secrets in ETL_WEBHOOK_SECRETS. `etl dev` starts one for you.
    """
    from etl_assets.collector.service import serve

    settings = load_settings()
    try:
        serve(settings, host=host)
    except ConfigError as error:
        fail(str(error))


@app.command()
def metrics(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 in a container)."),
    port: int = typer.Option(9300, min=1, max=65535, help="Port of the /metrics endpoint."),
) -> None:
    """Serve the pipeline's counters for Prometheus at /metrics: staging rows by status, quarantine, batches and
    records per source, when each source last sent, when staging was last merged.

    Reads the warehouse as ETL_TRANSFORM_DATABASE_URL (or DATABASE_URL) at each scrape.
    """
    import uvicorn

    from etl_assets.observability.pipeline_metrics import metrics_app
    from etl_assets.warehouse.engine import create_warehouse_engine

    settings = load_settings()
    url = settings.role_urls.get("ETL_TRANSFORM_DATABASE_URL") or settings.warehouse_url
    engine = create_warehouse_engine(
        url, pool_size=1, max_overflow=1, connect_timeout=5, ssl=settings.db_ssl_params, pgbouncer=settings.db_pgbouncer
    )
    uvicorn.run(metrics_app(engine), host=host, port=port, log_level="warning")


@app.command()
def seed(
    days: int = typer.Option(7, min=1, max=366, help="Days of events, ending at --last-day."),
    files: int = typer.Option(14, min=1, max=10_000, help="Files to write (JSONL, CSV and gzip JSONL in turn)."),
    events_per_file: int = typer.Option(1500, min=1, max=200_000, help="Events per file."),
    seed_value: int = typer.Option(1, "--seed", help="Seed of the generator: the same seed writes the same bytes."),
    last_day: str = typer.Option("", help="Last day (YYYY-MM-DD, UTC); yesterday by default."),
) -> None:
    """Drop realistic demo event files into the landing bucket (the local one of `etl dev`, or the configured store).

    The files hold sessions and funnels of many users, a few late events, re-sent duplicates and bad rows,
    so everything the pipeline does shows. With the sensors on, they load within a minute.
    """
    from datetime import UTC, date, datetime, timedelta

    from botocore.exceptions import BotoCoreError, ClientError

    from etl_assets.demo.seeding import seed_landing
    from etl_assets.progress_bars import SeedBar, progress_bar
    from etl_assets.sources.s3 import platform_s3_client

    settings = load_settings()
    try:
        final_day = date.fromisoformat(last_day) if last_day else datetime.now(UTC).date() - timedelta(days=1)
    except ValueError:
        fail(f"--last-day {last_day!r} is not a date: write it as YYYY-MM-DD")
    client = platform_s3_client(settings)
    started = time.monotonic()
    try:
        with progress_bar() as progress:
            report = seed_landing(
                client,
                settings.landing_bucket,
                settings.landing_prefix,
                last_day=final_day,
                days=days,
                files=files,
                events_per_file=events_per_file,
                seed=seed_value,
                progress=SeedBar(progress, files * events_per_file),
            )
    except (BotoCoreError, ClientError) as error:
        reason = str(error).strip().splitlines()[0]
        fail(f"cannot write to s3://{settings.landing_bucket} ({reason}): start `etl dev`, or check the AWS settings")
    say(
        f"wrote {report.files} files, {report.records:,} records, {report.days} days ({report.first_day} to "
        f"{report.last_day}) to s3://{settings.landing_bucket}/{settings.landing_prefix} in "
        f"{time.monotonic() - started:.1f}s"
    )


@app.command()
def bench(
    events: int = typer.Option(200_000, min=1_000, help="Events in the benchmark file (2 days, JSONL)."),
    seed_value: int = typer.Option(7, "--seed", help="Seed of the generator: the same seed writes the same file."),
    repeat: int = typer.Option(3, min=1, max=20, help="Times each path and reference is measured (median kept)."),
    tutorial_events: int = typer.Option(50_000, min=1_000, help="Events inserted by the ORM and executemany paths."),
    memory_events: str = typer.Option(
        "", help="Sizes of extra whole-file runs for peak memory, e.g. 1000000,5000000 (default: none)."
    ),
    sensor_objects: int = typer.Option(100_000, min=0, help="Objects the S3 sensor has seen (0: no sensor bench)."),
    small_files: int | None = typer.Option(
        None,
        min=0,
        help="Landing files of 100 events each loaded through the real sensor and runs, against the same events in "
        "one file (default: --events ÷ 200, 1,000 at the default size; 0: not measured).",
    ),
    output: str = typer.Option("", help="Where to write the JSON (default: ETL_HOME/bench/bench-<time>.json)."),
) -> None:
    """Measure the load paths against PostgreSQL's own COPY: psql \\copy of the same rows into the same tables on
    the same server, in the same run; the S3 sensor's tick over a bucket of 100,000 objects; and 1,000 small landing
    files against one file of the same events, through the real sensor, its runs and the merge.

    Starts its own PostgreSQL and S3 endpoint (or uses DATABASE_URL's server, creating a database etl_bench
    there). Prints a table and the JSON; the default size takes about 4 minutes on 2 cores.
    """
    import json
    from datetime import datetime
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from etl_assets.bench import report, runner
    from etl_assets.bench.references import PsqlMissing, psql_binary
    from etl_assets.progress_bars import progress_bar

    settings = load_settings()
    try:
        sizes = tuple(int(size.replace("_", "")) for size in memory_events.split(",") if size.strip())
    except ValueError:
        fail(f"--memory-events {memory_events!r} is not a list of numbers: write it as 1000000,5000000")
    try:
        psql_binary()
    except PsqlMissing as error:
        fail(str(error))
    options = runner.BenchOptions(
        events=events,
        seed=seed_value,
        repeat=repeat,
        tutorial_events=tutorial_events,
        memory_events=sizes,
        sensor_seen=sensor_objects,
        small_files=small_files,
        database_url=os.environ.get("DATABASE_URL") or None,
    )
    with progress_bar() as progress:
        task = progress.add_task("bench", total=runner.planned_steps(options))

        def show(description: str, done: bool) -> None:
            progress.update(task, description=description, advance=1 if done else 0)

        result = runner.run(options, show)

    table = Table(title=f"{events:,} events, median of {repeat}; ratio = rows/s ÷ psql \\copy into the same table")
    for heading in ("path", "rows", "seconds", "rows/s", "ratio", "peak RSS MB"):
        table.add_column(heading, justify="left" if heading == "path" else "right")
    for row in report.table_rows(result):
        table.add_row(*row)
    Console().print(table)
    for line in report.time_splits(result):
        say(f"split      {line}")
    for line in report.cpu_floors(result):
        say(f"cpu        {line}")
    if (parallel := report.concurrency(result)) is not None:
        say(f"parallel   {parallel}")
    if result.sensor is not None:
        ticks = result.sensor
        say(
            f"sensor     {ticks.seen_objects:,} objects seen: a tick with nothing new {ticks.nothing_new_seconds:.3f} s; "
            f"with {ticks.new_objects:,} new {ticks.new_objects_seconds:.3f} s ({ticks.new_files_requested:,} files in "
            f"{ticks.new_runs_requested} runs requested); a sweep page {ticks.sweep_page_seconds:.3f} s"
        )
    for outcome in report.targets(result):
        mark = {True: "met   ", False: "missed", None: "n/a   "}[outcome.met]
        say(f"target     {mark} {outcome.name}: {outcome.shown} (goal {outcome.goal})")
    document = report.as_json(result)
    path = Path(output) if output else settings.etl_home / "bench" / f"bench-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    say(json.dumps(document, default=str))
    say(f"wrote      {path} ({result.seconds:.0f} s)")


@app.command()
def status() -> None:
    """Print the state of the platform: which services answer (warehouse, S3, the Dagster webserver and daemon, the
    collector), rows waiting in staging, what quarantine holds, when each source last sent, and the last run,
    materialization and freshness of every asset.

    Exits 1 with one line saying what is down and what to do when any part does not answer.
    """
    from etl_assets.observability.platform_status import collect_status, problems_line, render_status

    settings = load_settings()
    report = collect_status(settings)
    if not any(service.up for service in report.services):
        fail(
            "the platform is not running: nothing answers (warehouse "
            f"{report.services[0].address}, Dagster {settings.ui_base_url}): start it with `uv run etl dev`, or set "
            "DATABASE_URL, AWS_ENDPOINT_URL_S3 and ETL_UI_URL to where it runs"
        )
    for line in render_status(report):
        say(line)
    if report.down:
        fail(problems_line(report))


@app.command("config")
def show_config() -> None:
    """Print every setting the platform reads and its value here (passwords hidden)."""
    settings = load_settings()
    for variable in VARIABLES:
        raw = os.environ.get(variable.name)
        value = printable_value(variable.name, raw) if raw else f"(default) {variable.default_text}"
        say(f"{variable.name:<22} {value}")
    say(f"{'→ warehouse':<22} {redact(settings.warehouse_url)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

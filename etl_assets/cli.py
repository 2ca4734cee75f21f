"""The ``etl`` command: the local platform, migrations, configuration."""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

import typer

from etl_assets.settings import VARIABLES, ConfigError, Settings, displayed, redact

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
def dev() -> None:
    """Run the whole platform locally: PostgreSQL, migrations, an S3 endpoint, the Dagster UI and daemon.

    Data is kept under ETL_HOME (.etl/ by default), so the next `etl dev` finds it. Set DATABASE_URL or
    AWS_ENDPOINT_URL_S3 to use servers of your own instead. Ctrl-C stops everything.
    """
    from etl_assets.localstack.stack import DevStack, StackError

    settings = load_settings()

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    stack = DevStack(settings, say)
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
    from etl_assets.resources.object_store import s3_client

    settings = load_settings()
    try:
        final_day = date.fromisoformat(last_day) if last_day else datetime.now(UTC).date() - timedelta(days=1)
    except ValueError:
        fail(f"--last-day {last_day!r} is not a date: write it as YYYY-MM-DD")
    if settings.s3_is_external:
        client = s3_client(settings.s3_endpoint_url, settings.aws_region)
    else:
        local = Settings.local_s3_credentials()
        client = s3_client(
            f"http://127.0.0.1:{settings.s3_port}",
            settings.aws_region,
            aws_access_key_id=local["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=local["AWS_SECRET_ACCESS_KEY"],
        )
    try:
        report = seed_landing(
            client,
            settings.landing_bucket,
            settings.landing_prefix,
            last_day=final_day,
            days=days,
            files=files,
            events_per_file=events_per_file,
            seed=seed_value,
        )
    except (BotoCoreError, ClientError) as error:
        reason = str(error).strip().splitlines()[0]
        fail(f"cannot write to s3://{settings.landing_bucket} ({reason}): start `etl dev`, or check the AWS settings")
    say(
        f"wrote {report.files} files, {report.records} records ({report.first_day} to {report.last_day}) "
        f"to s3://{settings.landing_bucket}/{settings.landing_prefix}"
    )


@app.command("config")
def show_config() -> None:
    """Print every setting the platform reads and its value here (passwords hidden)."""
    settings = load_settings()
    for variable in VARIABLES:
        raw = os.environ.get(variable.name)
        value = displayed(variable.name, raw) if raw else f"(default) {variable.default or 'unset'}"
        say(f"{variable.name:<22} {value}")
    say(f"{'→ warehouse':<22} {redact(settings.warehouse_url)}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

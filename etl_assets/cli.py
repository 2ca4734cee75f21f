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
    engine = create_warehouse_engine(settings.warehouse_url, pool_size=1, max_overflow=0)
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

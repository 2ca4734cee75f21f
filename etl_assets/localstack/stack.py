"""``etl dev``: the whole local platform, brought up in order and stopped in reverse.

PostgreSQL (embedded, or DATABASE_URL) → warehouse migrations → Dagster's storage database → the S3
endpoint (local moto, or the configured store) with its buckets → ``dagster dev``. Each part prints
one line when it is up. Any failure ends with one line saying what is wrong and what to do.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql
from sqlalchemy.engine import URL

from etl_assets.demo.seeding import landing_is_empty, seed_landing
from etl_assets.localstack import processes
from etl_assets.localstack.dagster import DagsterDev, dagster_home
from etl_assets.localstack.http_service import HttpService
from etl_assets.localstack.postgres import EmbeddedPostgres, ensure_database
from etl_assets.localstack.s3 import LocalS3
from etl_assets.settings import Settings, redact, with_driver, with_ssl
from etl_assets.sources.s3 import s3_client
from etl_assets.warehouse import migrate
from etl_assets.warehouse.engine import create_warehouse_engine

DAGSTER_DB = "dagster"
LOCAL_ROLE_USERS = {
    "ETL_INGEST_DATABASE_URL": ("ingest", "etl_ingest"),
    "ETL_TRANSFORM_DATABASE_URL": ("transform", "etl_transform"),
    "ETL_READER_DATABASE_URL": ("reader", "etl_reader"),
}
"""Local login users ``etl dev`` creates on its embedded PostgreSQL, and the group role each belongs to."""

LOCAL_DEMO_SECRETS = {
    "ETL_EVENTS_API_TOKEN": "local-demo-token",
    "ETL_SEGMENT_WRITE_KEYS": "local-write-key",
    "ETL_WEBHOOK_SECRETS": "demo-partner=local-webhook-secret",
    "ETL_PII_KEY": "local-demo-pii-key-not-for-production",
}
"""What ``etl dev`` uses for the local demo when these are unset (never a default outside ``etl dev``)."""


class StackError(Exception):
    """A part of the local platform could not come up; the message is one line for the user."""


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class DevStack:
    def __init__(self, settings: Settings, say: Callable[[str], None], *, paused: bool = False) -> None:
        self.settings = settings
        self.say = say
        self.paused = paused
        """Leave the pipeline's sensors stopped (``etl dev --paused``) instead of running them."""
        self.logs = settings.etl_home / "logs"
        self.postgres: EmbeddedPostgres | None = None
        self.s3: LocalS3 | None = None
        self.dagster: DagsterDev | None = None
        self.events_api: HttpService | None = None
        self.collector: HttpService | None = None
        self.warehouse_url: URL | None = None
        self.dagster_url: URL | None = None
        self.s3_endpoint: str | None = None
        self.role_urls: dict[str, URL] = {}

    # -- bring up ---------------------------------------------------------------------------------

    def up(self) -> None:
        self._check_ports()
        self.settings.etl_home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self._start_postgres()
        self._migrate()
        self._create_role_users()
        self._start_s3()
        self._start_events_api()
        self._start_collector()
        self._start_dagster()

    def _check_ports(self) -> None:
        wanted = [
            (self.settings.ui_port, "the Dagster UI", "ETL_UI_PORT"),
            (self.settings.collector_port, "the collector", "ETL_COLLECTOR_PORT"),
        ]
        if self.settings.events_api_url is None and self.settings.events_api_sources_file is None:
            wanted.append((self.settings.events_api_port, "the demo events API", "ETL_EVENTS_API_PORT"))
        if self.settings.database_url is None:
            wanted.append((self.settings.pg_port, "the embedded PostgreSQL", "ETL_PG_PORT"))
        if not self.settings.s3_is_external:
            wanted.append((self.settings.s3_port, "the local S3 endpoint", "ETL_S3_PORT"))
        for port, what, variable in wanted:
            if processes.port_in_use(port):
                raise StackError(
                    f"port {port} on 127.0.0.1 is in use (wanted for {what}): stop what holds it, "
                    f"or set {variable} to a free port"
                )

    def _start_postgres(self) -> None:
        settings = self.settings
        if settings.database_url is None:
            data_dir = settings.etl_home / "postgres"
            existed = (data_dir / "PG_VERSION").exists()
            self.postgres = EmbeddedPostgres(data_dir, settings.pg_port)
            try:
                self.postgres.start()
            except processes.NotReady as error:
                raise StackError(
                    f"the embedded PostgreSQL did not start ({_first_line(error)}): see {self.postgres.log_path}"
                ) from None
            self.warehouse_url = settings.warehouse_url
            self.say(
                f"postgres   127.0.0.1:{settings.pg_port}  PostgreSQL {self.postgres.version}, "
                f"{'existing' if existed else 'new'} data in {data_dir}"
            )
        else:
            self.warehouse_url = settings.database_url
            self._check_reachable(
                self.warehouse_url,
                "DATABASE_URL",
                "start that server, or unset DATABASE_URL to use the embedded PostgreSQL",
            )
            self.say(f"postgres   {redact(self.warehouse_url)} (DATABASE_URL)")
        self.dagster_url = settings.dagster_pg_url or self.warehouse_url.set(database=DAGSTER_DB)
        for url, variable in ((self.warehouse_url, "DATABASE_URL"), (self.dagster_url, "DAGSTER_PG_URL")):
            self._ensure_database(url, variable)

    def _libpq(self, url: URL) -> str:
        """A libpq URI for psycopg.connect, with ETL_DB_SSLMODE / ETL_DB_SSLROOTCERT unless the URL sets its own."""
        url = with_ssl(url, self.settings.db_ssl_params)
        return with_driver(url, "psycopg").set(drivername="postgresql").render_as_string(hide_password=False)

    def dagster_storage_url(self) -> str:
        """DAGSTER_PG_URL for ``dagster dev``: psycopg2 named, TLS parameters in the query unless it has its own."""
        assert self.dagster_url is not None
        url = with_ssl(with_driver(self.dagster_url, "psycopg2"), self.settings.db_ssl_params)
        return url.render_as_string(hide_password=False)

    def _check_reachable(self, url: URL, variable: str, advice: str) -> None:
        try:
            with psycopg.connect(self._libpq(url.set(database="postgres")), connect_timeout=5):
                pass
        except psycopg.OperationalError as error:
            if 'database "postgres" does not exist' in str(error):
                return
            reason = _first_line(error).removeprefix("connection failed: ")
            raise StackError(f"cannot reach {variable} ({redact(url)}): {reason}; {advice}") from None

    def _ensure_database(self, url: URL, variable: str) -> None:
        try:
            created = ensure_database(self._libpq(url.set(database="postgres")), url.database or "")
        except psycopg.Error as error:
            raise StackError(
                f"database {url.database!r} for {variable} is missing and could not be created "
                f"({_first_line(error)}): create it, or point {variable} at one that exists"
            ) from None
        if created:
            self.say(f"postgres   created database {url.database}")

    def _migrate(self) -> None:
        assert self.warehouse_url is not None
        engine = create_warehouse_engine(
            self.warehouse_url, pool_size=1, max_overflow=0, ssl=self.settings.db_ssl_params
        )
        try:
            revision = migrate.upgrade(engine)
        except Exception as error:
            raise StackError(f"migrating the warehouse failed: {_first_line(error)}") from None
        finally:
            engine.dispose()
        self.say(f"warehouse  database {self.warehouse_url.database} at revision {revision} (alembic upgrade head)")

    def _create_role_users(self) -> None:
        """On the embedded PostgreSQL, login users for the roles of migration 0004, so each part runs as its own
        role locally as it would in production (a configured ETL_*_DATABASE_URL is used as it is)."""
        assert self.warehouse_url is not None
        if self.settings.database_url is not None:
            return
        wanted = {name: user for name, user in LOCAL_ROLE_USERS.items() if name not in self.settings.role_urls}
        with psycopg.connect(self._libpq(self.warehouse_url), autocommit=True) as conn:
            for name, (user, group) in wanted.items():
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(user)))
                self.role_urls[name] = self.warehouse_url.set(username=user, password=None)
        if wanted:
            reader = self.role_urls.get("ETL_READER_DATABASE_URL")
            self.say(
                "roles      ingest, transform and reader users, each with only its role's rights"
                + (f"; query as an analyst with psql {self._libpq(reader)}" if reader else "")
            )

    def _start_s3(self) -> None:
        settings = self.settings
        buckets = (settings.landing_bucket, settings.archive_bucket)
        if settings.s3_is_external:
            self.s3_endpoint = settings.s3_endpoint_url
            client = s3_client(settings.s3_endpoint_url, settings.aws_region)
            where = settings.s3_endpoint_url or "AWS S3"
            for bucket, variable in zip(buckets, ("ETL_LANDING_BUCKET", "ETL_ARCHIVE_BUCKET"), strict=True):
                try:
                    client.head_bucket(Bucket=bucket)
                except ClientError as error:
                    code = error.response.get("Error", {}).get("Code", "")
                    if code in ("404", "NoSuchBucket", "NotFound"):
                        raise StackError(
                            f"bucket {bucket!r} does not exist at {where}: create it, or set {variable} to one that does"
                        ) from None
                    raise StackError(
                        f"bucket {bucket!r} at {where} is not usable ({code}): check the AWS credentials "
                        f"and that {variable} names a bucket they can read"
                    ) from None
                except BotoCoreError as error:
                    raise StackError(
                        f"cannot reach the S3 endpoint {where} ({_first_line(error)}): start it, or "
                        "unset AWS_ENDPOINT_URL_S3 to use the local one"
                    ) from None
            self.say(f"s3         {where}  buckets {', '.join(buckets)} (configured store)")
            return
        self.s3 = LocalS3(settings.s3_port, self.logs / "s3.log")
        try:
            self.s3.start()
        except processes.NotReady as error:
            raise StackError(
                f"the local S3 endpoint did not start ({_first_line(error)}): see {self.s3.log_path}"
            ) from None
        self.s3_endpoint = self.s3.endpoint_url
        client = s3_client(self.s3_endpoint, settings.aws_region, **Settings.local_s3_client_credentials())
        for bucket in buckets:
            client.create_bucket(Bucket=bucket)
        self.say(f"s3         {self.s3_endpoint}  buckets {', '.join(buckets)} (local moto server, kept in memory)")
        self._seed_demo_files(client)

    def _seed_demo_files(self, client: Any) -> None:
        settings = self.settings
        if not landing_is_empty(client, settings.landing_bucket, settings.landing_prefix):
            return
        report = seed_landing(
            client,
            settings.landing_bucket,
            settings.landing_prefix,
            last_day=datetime.now(UTC).date() - timedelta(days=1),
        )
        self.say(
            f"s3         seeded {report.files} demo files ({report.records} records, {report.first_day} to "
            f"{report.last_day}) under s3://{settings.landing_bucket}/{settings.landing_prefix}; "
            + (
                "turn on landing_files_sensor and staged_days_sensor in the UI to load them"
                if self.paused
                else "the sensors load them into the daily tables in a few minutes"
            )
        )

    def child_environment(self) -> dict[str, str]:
        """What every Dagster process (webserver, daemon, code server, runs) needs to reach the parts."""
        assert self.warehouse_url is not None and self.dagster_url is not None
        env = dict(os.environ)
        env.update(
            DAGSTER_HOME=str(dagster_home(self.settings.etl_home)),
            DAGSTER_PG_URL=self.dagster_storage_url(),
            DATABASE_URL=self.warehouse_url.render_as_string(hide_password=False),
            AWS_REGION=self.settings.aws_region,
            ETL_SENSORS_RUNNING="false" if self.paused else "true",
        )
        if not self.settings.s3_is_external:
            env.update(Settings.local_s3_credentials(), AWS_ENDPOINT_URL_S3=self.s3_endpoint or "")
        for name, value in LOCAL_DEMO_SECRETS.items():
            if not env.get(name):
                env[name] = value
        for name, url in self.role_urls.items():
            env.setdefault(name, url.render_as_string(hide_password=False))
        return env

    def _start_events_api(self) -> None:
        settings = self.settings
        if settings.events_api_url is not None or settings.events_api_sources_file is not None:
            where = settings.events_api_url or f"the sources in {settings.events_api_sources_file}"
            self.say(f"events api {where} (configured; events_api_sensor polls it)")
            return
        env = self.child_environment()
        self.events_api = HttpService(
            "etl_assets.demo.events_api_server",
            ["--port", str(settings.events_api_port), "--token", env["ETL_EVENTS_API_TOKEN"]],
            settings.events_api_port,
            self.logs / "events-api.log",
            env,
        )
        try:
            self.events_api.start()
        except processes.NotReady as error:
            raise StackError(
                f"the demo events API did not start ({_first_line(error)}): see {self.events_api.log_path}"
            ) from None
        self.say(
            f"events api {settings.demo_events_api_url}  demo feed, 2 events/s, random 429/500; "
            + ("turn on events_api_sensor to poll it" if self.paused else "events_api_sensor polls it")
        )

    def _start_collector(self) -> None:
        env = self.child_environment()
        self.collector = HttpService(
            "etl_assets.collector.service", [], self.settings.collector_port, self.logs / "collector.log", env
        )
        try:
            self.collector.start()
        except processes.NotReady as error:
            raise StackError(
                f"the collector did not start ({_first_line(error)}): see {self.collector.log_path}"
            ) from None
        url = self.collector.url
        keys = "" if os.environ.get("ETL_SEGMENT_WRITE_KEYS") else f" (write key {env['ETL_SEGMENT_WRITE_KEYS']})"
        self.say(f"collector  {url}/v1/batch (Segment){keys}, {url}/webhooks/<partner>, {url}/metrics")

    def _start_dagster(self) -> None:
        self.dagster = DagsterDev(self.settings.ui_port, self.logs / "dagster.log", self.child_environment())
        try:
            statuses = self.dagster.start()
        except processes.NotReady as error:
            raise StackError(f"dagster dev did not start ({_first_line(error)}): see {self.dagster.log_path}") from None
        assert self.dagster_url is not None
        self.say(
            f"dagster    {self.dagster.url}  webserver + daemon, storage in database {self.dagster_url.database}, "
            f"logs in {self.dagster.log_path}"
        )
        self.say(
            "dagster    sensors stopped (--paused): start them under Automation"
            if self.paused
            else "dagster    landing_files_sensor, staged_days_sensor and events_api_sensor running "
            "(`etl dev --paused` leaves them stopped)"
        )
        for status in statuses:
            if status.error:
                self.say(f"dagster    code location {status.name} failed to load: {_first_line(status.error)}")
            else:
                self.say(f"dagster    code location {status.name} loaded")

    # -- run and stop -----------------------------------------------------------------------------

    def children(self) -> list[tuple[str, subprocess.Popen[bytes] | None, Path]]:
        return [
            ("dagster dev", self.dagster.process if self.dagster else None, self.logs / "dagster.log"),
            ("the collector", self.collector.process if self.collector else None, self.logs / "collector.log"),
            ("the demo events API", self.events_api.process if self.events_api else None, self.logs / "events-api.log"),
            ("the local S3 endpoint", self.s3.process if self.s3 else None, self.logs / "s3.log"),
            (
                "postgres",
                self.postgres.process if self.postgres else None,
                self.postgres.log_path if self.postgres else Path(),
            ),
        ]

    def watch(self, poll_seconds: float = 0.5) -> None:
        """Block until a child exits on its own (then raise) or the caller is interrupted."""
        while True:
            for name, process, log in self.children():
                if process is not None and process.poll() is not None:
                    raise StackError(f"{name} exited with code {process.returncode}: see {log}")
            time.sleep(poll_seconds)

    def down(self) -> float:
        """Stop every child, newest first; return the seconds it took."""
        started = time.monotonic()
        if self.dagster is not None:
            self.dagster.stop()
        for service in (self.collector, self.events_api):
            if service is not None:
                service.stop()
        if self.s3 is not None:
            self.s3.stop()
        if self.postgres is not None:
            self.postgres.stop()
        return time.monotonic() - started

"""Secrets never reach the UI, run metadata, the event log or logs.

Every secret the platform reads (the warehouse password inside DATABASE_URL, AWS_SECRET_ACCESS_KEY,
ETL_EVENTS_API_TOKEN, ETL_SEGMENT_WRITE_KEYS, ETL_WEBHOOK_SECRETS, ETL_ALERT_WEBHOOK_URL, ETL_PII_KEY) is set to a unique
marker string, and the real pipeline runs with them on a real Dagster instance whose storage lives under the
test's folder: a landing file through the S3 sensor and its ingest run, Segment calls and a signed webhook
through the collector, the events API through its sensor and poll run, the staged days through
``daily_events_job`` and its data checks, and a failed check through the alert sensor to a webhook.

Then no marker may appear in any log line (Python logging at DEBUG, stdout and stderr), in any event of any
run, in any run's tags, config or snapshots, in any materialization or check metadata, in what the UI shows
of the code location (resources, jobs, sensors), in the sensors' cursors and skip reasons, in any byte (or
zlib-decompressed value) Dagster wrote under its storage folder, or in what the collector and the alert
webhook answered or received. And every marker must have been used, so the test cannot pass vacuously: the
warehouse refuses the role without its marker password, the API answered only the marker token, the
collector refused keys and signatures that are not the markers, the alert arrived at the marker URL.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import boto3
import dagster as dg
import psycopg
import pytest
import requests
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
from psycopg import sql
from sqlalchemy import Engine, func, select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from etl_assets.collector.service import build_app
from etl_assets.collector.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from etl_assets.demo.events_api_server import FeedSettings
from etl_assets.demo.events_api_server import create_app as create_events_api
from etl_assets.localstack.postgres import EmbeddedPostgres
from etl_assets.localstack.processes import free_port
from etl_assets.settings import Settings
from etl_assets.transform.pii import pseudonymize
from etl_assets.warehouse import migrate
from etl_assets.warehouse.engine import create_warehouse_engine
from etl_assets.warehouse.schema import events, raw_batches, staging_events
from tests.asgi_server import serve
from tests.harness import Pipeline

PARTNER = "acme"
OTHER_WRITE_KEY = "not-a-secret-other-key"
PII_EMAIL = "someone@example.com"


@dataclass(frozen=True)
class Markers:
    """One unique marker per secret, named by the variable that carries it."""

    DATABASE_URL: str = field(default_factory=lambda: f"MARKER-{uuid4().hex}")
    AWS_SECRET_ACCESS_KEY: str = field(default_factory=lambda: f"MARKER-{uuid4().hex}")
    ETL_EVENTS_API_TOKEN: str = field(default_factory=lambda: f"MARKER-{uuid4().hex}")
    ETL_SEGMENT_WRITE_KEYS: str = field(default_factory=lambda: f"MARKER-{uuid4().hex}")
    ETL_WEBHOOK_SECRETS: str = field(default_factory=lambda: f"MARKER-{uuid4().hex}")
    ETL_ALERT_WEBHOOK_URL: str = field(default_factory=lambda: f"MARKER-{uuid4().hex}")
    ETL_PII_KEY: str = field(default_factory=lambda: f"MARKER-{uuid4().hex}")

    def by_variable(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Evidence:
    """Everything the platform wrote or showed, by where it was found, to be searched for markers."""

    texts: dict[str, str | bytes] = field(default_factory=dict)

    def add(self, where: str, value: Any) -> None:
        if isinstance(value, str | bytes):
            self.texts[where] = value
        else:
            try:
                self.texts[where] = serialize_value(value)
            except Exception:
                self.texts[where] = repr(value)

    def findings(self, markers: Markers) -> list[str]:
        found = []
        for where, value in self.texts.items():
            haystack = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
            for variable, marker in markers.by_variable().items():
                at = haystack.find(marker.encode())
                if at >= 0:
                    excerpt = haystack[max(0, at - 120) : at + len(marker) + 40].decode("utf-8", "replace")
                    found.append(f"{variable} in {where}: …{excerpt}…")
        return found


class CollectingHandler(logging.Handler):
    """Keeps every record, formatted with its traceback, for the whole test."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception as error:  # a record whose arguments do not format is still kept
            line = f"{record.name} {record.msg!r} {record.args!r} ({error})"
        with self._guard:
            self.lines.append(line)


@pytest.fixture
def all_python_logs() -> Iterator[CollectingHandler]:
    """Python logging at DEBUG, on the root logger and on Dagster's own loggers, for the whole test (and on
    SQLAlchemy's, which it sets to WARNING at import: statements, parameters, connections and rows too)."""
    handler = CollectingHandler()
    loggers = [logging.getLogger(name) for name in (None, "dagster", "dagster.builtin", "sqlalchemy")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def markers() -> Markers:
    return Markers()


@dataclass(frozen=True)
class MarkerWarehouse:
    url: str
    """DATABASE_URL: the role and its marker password."""
    superuser_url: str
    role: str


def _require_password_for(server: EmbeddedPostgres, role: str) -> tuple[Path, str]:
    """Put a scram-sha-256 line for ``role`` above the server's ``trust`` lines; return the file and its
    old text. The embedded server trusts every local connection, so without it no password is checked."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        hba_file = Path(conn.execute("SHOW hba_file").fetchone()[0])
        original = hba_file.read_text()
        hba_file.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{original}")
        conn.execute("SELECT pg_reload_conf()")
    return hba_file, original


def _refused(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return False
    except psycopg.OperationalError as error:
        return "password authentication failed" in str(error)


@pytest.fixture
def marker_warehouse(
    all_python_logs: CollectingHandler, postgres_server: EmbeddedPostgres, markers: Markers, migrated_template: str
) -> Iterator[MarkerWarehouse]:
    """A role whose password is the marker (sent to the server as a SCRAM verifier, never in clear), the
    owner of a database of this test's own, migrated by that role; the server checks its password.

    The cluster-wide roles of migration 0004 are created by a superuser first (``migrated_template``), as an
    operator would: this role may not create roles, only grant on what it owns."""
    role = f"etl_probe_{uuid4().hex[:10]}"
    database = f"test_secrets_{uuid4().hex[:10]}"
    password = markers.DATABASE_URL
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(verifier)
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role)))
    hba_file, original_hba = _require_password_for(postgres_server, role)
    host = f"{postgres_server.host}:{postgres_server.port}"
    url = f"postgresql://{role}:{password}@{host}/{database}"
    try:
        deadline = time.monotonic() + 10
        while not _refused(f"postgresql://{role}:wrong-password@{host}/{database}"):
            assert time.monotonic() < deadline, "the server kept trusting the role after its pg_hba.conf reload"
            time.sleep(0.05)
        engine = create_warehouse_engine(url, pool_size=1, max_overflow=0)
        migrate.upgrade(engine)
        engine.dispose()
        yield MarkerWarehouse(url=url, superuser_url=postgres_server.url(database), role=role)
    finally:
        with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            hba_file.write_text(original_hba)
            conn.execute("SELECT pg_reload_conf()")


class AlertWebhook:
    """An incoming webhook whose path ends in a secret token; keeps what was POSTed to which token."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    async def hook(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        with self._lock:
            self.received.append((request.path_params["token"], body))
        return PlainTextResponse("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks/{token}", self.hook, methods=["POST"])])


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def landing_file(moment: datetime) -> bytes:
    """Three good events and one without a type (the staging check warns about it: an alert)."""
    records = [
        {"id": "s1", "type": "page_view", "timestamp": iso(moment), "user": {"id": "u1"}, "email": PII_EMAIL},
        {
            "id": "s2",
            "type": "product_view",
            "timestamp": iso(moment),
            "user": {"id": "u1"},
            "product": {"id": "p1", "price": "10.00", "currency": "EUR"},
        },
        {"id": "s3", "type": "", "timestamp": iso(moment), "user": {"id": "u2"}},
        {"id": "s4", "type": "page_view", "timestamp": iso(moment), "user": {"id": "u3"}},
    ]
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def segment_call(url: str, call: str, body: dict, write_key: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if write_key is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    return requests.post(f"{url}/v1/{call}", data=json.dumps(body).encode(), headers=headers, timeout=10)


def partner_webhook(url: str, body: bytes, secret: str) -> requests.Response:
    timestamp = int(time.time())
    headers = {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}
    return requests.post(f"{url}/webhooks/{PARTNER}", data=body, headers=headers, timeout=10)


def tick(platform: Pipeline, sensor_name: str, evidence: Evidence) -> list[dg.RunRequest]:
    """Evaluate a sensor as the daemon would (cursor kept); what it returns is what its tick shows in the UI."""
    sensor = platform.definitions.resolve_sensor_def(sensor_name)
    with dg.build_sensor_context(
        instance=platform.instance,
        cursor=platform.cursors.get(sensor_name),
        definitions=platform.definitions,
        resources=platform.definitions.resources,
        sensor_name=sensor_name,
    ) as context:
        result = sensor(context)
    evidence.add(f"tick {len(evidence.texts)} of {sensor_name}", repr(result))
    if isinstance(result, dg.SkipReason):
        return []
    if result.cursor is not None:
        platform.cursors[sensor_name] = result.cursor
    return list(result.run_requests or [])


def sqlite_values(path: Path) -> Iterator[tuple[str, str | bytes]]:
    """Every value of every table of a SQLite file, and the zlib-decompressed form of compressed ones
    (Dagster stores job and plan snapshots compressed)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, str | bytes):
                        yield table, value
                        raw = value if isinstance(value, bytes) else value.encode("latin-1", "ignore")
                        with contextlib.suppress(zlib.error):
                            yield f"{table} (decompressed)", zlib.decompress(raw)


def collect_instance(instance: dg.DagsterInstance, evidence: Evidence) -> list[dg.DagsterRun]:
    runs = list(instance.get_runs())
    for run in runs:
        evidence.add(f"run {run.run_id} (tags, config, origin)", run)
        evidence.add(f"run {run.run_id} tags", json.dumps(dict(run.tags)))
        evidence.add(f"run {run.run_id} config", json.dumps(run.run_config, default=str))
        if run.job_snapshot_id:
            evidence.add(f"job snapshot of run {run.run_id}", instance.get_job_snapshot(run.job_snapshot_id))
        if run.execution_plan_snapshot_id:
            evidence.add(
                f"plan snapshot of run {run.run_id}",
                instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id),
            )
        for number, entry in enumerate(instance.all_logs(run.run_id)):
            evidence.add(f"event {number} of run {run.run_id}", serialize_value(entry) + "\n" + str(entry))
            dagster_event = entry.dagster_event
            if dagster_event is None:
                continue
            if dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                materialization = dagster_event.step_materialization_data.materialization
                evidence.add(
                    f"materialization metadata {materialization.asset_key.to_user_string()} in {run.run_id}",
                    repr(materialization.metadata),
                )
            if dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = dagster_event.asset_check_evaluation_data
                evidence.add(
                    f"check metadata {evaluation.check_name} in {run.run_id}",
                    repr(evaluation.metadata) + repr(evaluation.description),
                )
    return runs


def collect_storage_files(home: Path, evidence: Evidence) -> int:
    files = [path for path in home.rglob("*") if path.is_file()]
    for path in files:
        evidence.add(f"bytes of {path.relative_to(home)}", path.read_bytes())
        if path.suffix == ".db":
            for number, (table, value) in enumerate(sqlite_values(path)):
                evidence.add(f"value {number} of {path.relative_to(home)}:{table}", value)
    return len(files)


def collect_code_location(definitions: dg.Definitions, evidence: Evidence) -> None:
    """What the UI shows of the code location: resources with their config, jobs with their config
    schema and defaults, sensors, assets (the repository snapshot the webserver reads)."""
    for name, resource in (definitions.resources or {}).items():
        evidence.add(f"resource {name} (str)", str(resource))
        if isinstance(resource, dg.ConfigurableResource | dg.ConfigurableIOManager):
            evidence.add(f"resource {name} (model_dump)", repr(resource.model_dump()))
    evidence.add("repository snapshot (the UI's view)", RepositorySnap.from_def(definitions.get_repository_def()))


def count(engine: Engine, statement: Any) -> int:
    with engine.connect() as conn:
        return conn.scalar(statement)


def test_marker_secrets_are_used_and_never_shown(
    all_python_logs: CollectingHandler,
    markers: Markers,
    marker_warehouse: MarkerWarehouse,
    s3_endpoint: str,
    buckets: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
):
    evidence = Evidence()
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    events_api = create_events_api(
        FeedSettings(
            token=markers.ETL_EVENTS_API_TOKEN,
            backlog=40,
            events_per_second=0.05,
            rate_limit_share=0.0,
            error_share=0.0,
            retry_after_seconds=0,
        )
    )
    alert_webhook = AlertWebhook()
    alert_port = free_port()
    alert_url = f"http://127.0.0.1:{alert_port}"
    with serve(events_api) as events_api_url:
        environment = {
            "DATABASE_URL": marker_warehouse.url,
            "AWS_ENDPOINT_URL_S3": s3_endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": markers.AWS_SECRET_ACCESS_KEY,
            "AWS_REGION": "us-east-1",
            "ETL_LANDING_BUCKET": buckets["landing"],
            "ETL_ARCHIVE_BUCKET": buckets["archive"],
            "ETL_LANDING_PREFIX": "landing/",
            "ETL_EVENTS_API_URL": f"{events_api_url}/events",
            "ETL_EVENTS_API_TOKEN": markers.ETL_EVENTS_API_TOKEN,
            "ETL_SEGMENT_WRITE_KEYS": f"{OTHER_WRITE_KEY},{markers.ETL_SEGMENT_WRITE_KEYS}",
            "ETL_WEBHOOK_SECRETS": f"{PARTNER}={markers.ETL_WEBHOOK_SECRETS}",
            "ETL_ALERT_WEBHOOK_URL": f"{alert_url}/hooks/{markers.ETL_ALERT_WEBHOOK_URL}",
            "ETL_PII_KEY": markers.ETL_PII_KEY,
            "ETL_UI_URL": "https://dagster.example.com",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        s3.put_object(Bucket=buckets["landing"], Key="landing/secrets/a.jsonl", Body=landing_file(moment))

        # The collector, built from the environment as `etl collector` builds it.
        with serve(build_app(Settings.from_env())) as collector_url:
            track = {
                "messageId": "seg-1",
                "event": "Product Viewed",
                "userId": "u1",
                "timestamp": iso(moment),
                "properties": {"product_id": "p1", "price": 10, "currency": "EUR"},
            }
            accepted = [
                segment_call(
                    collector_url, "batch", {"batch": [{**track, "type": "track"}]}, markers.ETL_SEGMENT_WRITE_KEYS
                ),
                segment_call(
                    collector_url,
                    "track",
                    {**track, "messageId": "seg-2", "writeKey": markers.ETL_SEGMENT_WRITE_KEYS},
                    write_key=None,
                ),
                partner_webhook(
                    collector_url,
                    json.dumps(
                        {"events": [{"id": "w1", "type": "page_view", "timestamp": iso(moment), "user": {"id": "u9"}}]}
                    ).encode(),
                    markers.ETL_WEBHOOK_SECRETS,
                ),
            ]
            refused = [
                segment_call(collector_url, "track", track, "MARKER-not-the-key"),
                partner_webhook(collector_url, b'{"events": []}', "MARKER-not-the-secret"),
            ]
            metrics = requests.get(f"{collector_url}/metrics", timeout=10).text
            health = requests.get(f"{collector_url}/healthz", timeout=10)
        assert [response.status_code for response in accepted] == [200, 200, 200], [r.text for r in accepted]
        assert [response.status_code for response in refused] == [401, 401]
        assert health.status_code == 200
        for number, response in enumerate([*accepted, *refused, health]):
            evidence.add(f"collector answer {number}", f"{response.headers}\n{response.text}")
        evidence.add("collector metrics", metrics)

        from etl_assets.definitions import defs

        definitions = defs()
        dagster_home = tmp_path / "dagster_home"
        dagster_home.mkdir()
        event_logs = dagster_home / "event_logs"
        overrides = {
            # Consolidated (not run-sharded) so the alert sensor can read failed checks across runs.
            "event_log_storage": {
                "module": "dagster._core.storage.event_log",
                "class": "ConsolidatedSqliteEventLogStorage",
                "config": {"base_dir": str(event_logs)},
            }
        }
        with dg.instance_for_test(temp_dir=str(dagster_home), overrides=overrides) as instance:
            platform = Pipeline(definitions, instance)
            assert tick(platform, "quality_alerts_sensor", evidence) == []  # starts from now

            platform.execute("landing_files_sensor", tick(platform, "landing_files_sensor", evidence))
            platform.execute("events_api_sensor", tick(platform, "events_api_sensor", evidence))
            day_runs = platform.execute("staged_days_sensor", tick(platform, "staged_days_sensor", evidence))
            assert day_runs and all(result.success for result in day_runs)
            failed_checks = [
                evaluation
                for result in day_runs
                for evaluation in result.get_asset_check_evaluations()
                if not evaluation.passed
            ]
            assert failed_checks, "the event without a type should fail the staging check with WARN"
            # The webhook is down at first: the POST is retried (urllib3 logs each retry at WARNING), the
            # sensor logs that the alert waits; then it is up and the alert is delivered.
            assert tick(platform, "quality_alerts_sensor", evidence) == []
            assert alert_webhook.received == []
            with serve(alert_webhook.app(), port=alert_port):
                assert tick(platform, "quality_alerts_sensor", evidence) == []

            for result in platform.runs:
                for materialization in result.get_asset_materialization_events():
                    evidence.add(
                        f"materialization in result {result.run_id}",
                        repr(materialization.step_materialization_data.materialization.metadata),
                    )
                for evaluation in result.get_asset_check_evaluations():
                    evidence.add(f"check {evaluation.check_name} in result {result.run_id}", repr(evaluation))
            runs = collect_instance(instance, evidence)
            for sensor_name, cursor in platform.cursors.items():
                evidence.add(f"cursor of {sensor_name}", cursor or "")
        files_scanned = collect_storage_files(dagster_home, evidence)
        collect_code_location(definitions, evidence)
        for number, (_token, body) in enumerate(alert_webhook.received):
            evidence.add(f"alert message {number}", body)
        served = list(events_api.state.served)

    # Each marker was used.
    engine = create_warehouse_engine(marker_warehouse.superuser_url, pool_size=1, max_overflow=0)
    try:
        assert _refused(marker_warehouse.url.replace(markers.DATABASE_URL, "MARKER-wrong")), (
            "the server must check the role's password, or the password proves nothing"
        )
        with engine.connect() as conn:
            sources = dict(
                conn.execute(select(staging_events.c.source, func.count()).group_by(staging_events.c.source)).all()
            )
        assert sources.get("s3") == 4 and sources.get("api:demo", 0) >= 40
        assert sources.get("segment") == 2 and sources.get(f"webhook:{PARTNER}") == 1
        assert count(engine, select(func.count()).select_from(events)) >= 40 + 3 + 2 + 1
        with engine.connect() as conn:
            owners = set(
                conn.scalars(text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")).all()
            )
            pii_email = conn.scalar(select(events.c.properties["email"].astext).where(events.c.event_id == "s1"))
            stored_secret = conn.scalar(
                select(func.count())
                .select_from(staging_events)
                .where(text("payload::text LIKE :pattern").bindparams(pattern="%MARKER-%"))
            )
        assert owners == {marker_warehouse.role}  # even the partitions the runs created
        assert stored_secret == 0  # a write key sent in a Segment body is dropped before staging
        archived = count(
            engine, select(func.count()).select_from(raw_batches).where(raw_batches.c.archive_key.is_not(None))
        )
    finally:
        engine.dispose()
    archive_objects = s3.list_objects_v2(Bucket=buckets["archive"]).get("KeyCount", 0)
    assert archived >= 4 and archive_objects >= archived  # written by the runs' and the collector's S3 clients
    frozen = boto3.Session().get_credentials().get_frozen_credentials()
    assert frozen.secret_key == markers.AWS_SECRET_ACCESS_KEY  # the chain those clients signed with
    assert served and all(request.status == 200 for request in served)  # 401 for any other token
    assert {token for token, _ in alert_webhook.received} == {markers.ETL_ALERT_WEBHOOK_URL}
    assert pii_email == pseudonymize(PII_EMAIL, markers.ETL_PII_KEY.encode())  # the merge hashed it with the key
    assert len(alert_webhook.received) >= len(failed_checks)

    # No marker was shown anywhere.
    captured = capfd.readouterr()
    evidence.add("stdout", captured.out)
    evidence.add("stderr", captured.err)
    evidence.add("python logging", "\n".join(all_python_logs.lines))
    findings = evidence.findings(markers)
    assert not findings, f"{len(findings)} secrets shown:\n" + "\n".join(findings)

    # The search saw what it had to: the runs, the files, the lines that name each secret's neighbours.
    assert len(runs) == len(platform.runs) >= 3  # ingest, poll, daily_events_job
    assert files_scanned >= 3
    python_logs = evidence.texts["python logging"]
    assert f"user={marker_warehouse.role} " in python_logs  # every connection is logged, without its password
    assert f'{alert_url} "POST ' in python_logs  # the alert's request line is logged, without its path
    assert "after connection broken by" in python_logs  # and so are its retries while the webhook was down
    ui_view = evidence.texts["repository snapshot (the UI's view)"]
    assert '"DATABASE_URL"' in ui_view and environment["ETL_EVENTS_API_URL"] in ui_view  # config values shown
    assert isinstance(definitions.resources["warehouse"].database_url, dg.EnvVar)  # a reference, not the value

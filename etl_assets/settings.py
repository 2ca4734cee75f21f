"""Configuration read from the environment, validated once, in one place.

Every variable the platform reads is listed in ``VARIABLES`` (the README's configuration table is
checked against it by a test). Values are parsed here so that a bad one fails early with one line
that says what is wrong and what to do, instead of a traceback deep inside a run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypedDict

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from etl_assets.transform.inbound import SEGMENT_SOURCE
from etl_assets.transform.pii import PiiPolicy
from etl_assets.transform.records import DEFAULT_ARRAY_KEYS

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line saying what to do."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None
    help: str


VARIABLES: tuple[Variable, ...] = (
    Variable("ETL_HOME", "<project>/.etl", "Folder for local state: embedded PostgreSQL data, Dagster home, logs."),
    Variable(
        "DATABASE_URL",
        None,
        "Warehouse PostgreSQL URL (`postgresql://user:pass@host:5432/db`). Unset: `etl dev` starts an "
        "embedded PostgreSQL and uses its `warehouse` database.",
    ),
    Variable(
        "DAGSTER_PG_URL",
        None,
        "Dagster's instance storage (runs, events, schedules). Unset: the `dagster` database on the "
        "warehouse's server.",
    ),
    Variable(
        "ETL_INGEST_DATABASE_URL",
        None,
        "URL of the ingestion role (member of `etl_ingest`: writes raw_batches, staging and quarantine, reads "
        "nothing downstream) used by the ingest runs, the API poller and the collector. Unset: DATABASE_URL; "
        "`etl dev` sets it to a local `ingest` user.",
    ),
    Variable(
        "ETL_TRANSFORM_DATABASE_URL",
        None,
        "URL of the transform role (member of `etl_transform`: reads staging, writes events and the daily tables) "
        "used by the merge, the enrichment and the checks. Unset: DATABASE_URL; `etl dev` sets it to a local "
        "`transform` user.",
    ),
    Variable(
        "ETL_READER_DATABASE_URL",
        None,
        "URL for analysts and dashboards (member of `etl_reader`: reads events and the daily tables only). The "
        "platform does not use it; `etl dev` creates a local `reader` user and prints its URL.",
    ),
    Variable("ETL_PG_PORT", "5433", "Port of the embedded PostgreSQL on 127.0.0.1 (only when DATABASE_URL is unset)."),
    Variable("ETL_UI_PORT", "3000", "Port of the Dagster UI on 127.0.0.1."),
    Variable("ETL_S3_PORT", "9000", "Port of the local S3 endpoint (moto) on 127.0.0.1."),
    Variable(
        "AWS_ENDPOINT_URL_S3",
        None,
        "An S3-compatible endpoint (MinIO, …). When this, AWS_ENDPOINT_URL or AWS_ACCESS_KEY_ID is set, "
        "`etl dev` starts no local S3 and uses that store; credentials come from the usual AWS variables.",
    ),
    Variable("AWS_REGION", "us-east-1", "Region for the S3 client."),
    Variable("ETL_LANDING_BUCKET", "events-landing", "Bucket where event files land."),
    Variable("ETL_LANDING_PREFIX", "landing/", "Key prefix of landing files inside the landing bucket."),
    Variable("ETL_ARCHIVE_BUCKET", "events-archive", "Bucket of the raw archive (every byte that entered)."),
    Variable("ETL_DB_POOL_SIZE", "5", "SQLAlchemy connection pool size per process."),
    Variable("ETL_DB_MAX_OVERFLOW", "5", "Connections allowed beyond the pool size under load."),
    Variable(
        "ETL_DB_PGBOUNCER",
        "false",
        "true when the warehouse URLs point at PgBouncer in transaction pooling mode: psycopg then prepares no "
        "server-side statements, which PgBouncer before 1.21 cannot track. Keep DAGSTER_PG_URL on PostgreSQL itself.",
    ),
    Variable(
        "ETL_DB_SSLMODE",
        None,
        "TLS to PostgreSQL (warehouse and Dagster storage): disable, allow, prefer, require, verify-ca or "
        "verify-full. Unset: libpq's default (prefer). An `sslmode` in the URL's query wins.",
    ),
    Variable(
        "ETL_DB_SSLROOTCERT",
        None,
        "Path of the CA certificate that signed the server's certificate (PEM); needed by verify-ca and "
        "verify-full. An `sslrootcert` in the URL's query wins.",
    ),
    Variable(
        "ETL_FIRST_DAY",
        "2025-01-01",
        "First day (UTC) of the daily partitions; older events are quarantined with the reason.",
    ),
    Variable("ETL_SENSOR_MAX_RUNS", "25", "Runs the S3 sensor requests per tick at most; the rest wait for the next."),
    Variable(
        "ETL_MERGE_DAYS_AT_ONCE",
        "2",
        "Days one events run merges at the same time, each in a transaction of its own (a backfill's days spread over "
        "the warehouse's cores; runs of other days merge beside it).",
    ),
    Variable(
        "ETL_LANDING_RUN_MAX_FILES",
        "200",
        "Landing files one ingest run takes at most: the S3 sensor puts new files into runs of up to this many "
        "(each file still its own batch).",
    ),
    Variable(
        "ETL_LANDING_RUN_MAX_BYTES",
        str(64 * 2**20),
        "Bytes of landing files one ingest run takes at most (64 MiB); a file larger than half of it gets a run of "
        "its own.",
    ),
    Variable("ETL_COLLECTOR_PORT", "9200", "Port of the collector (signed webhooks, Segment-compatible tracking API)."),
    Variable(
        "ETL_SEGMENT_WRITE_KEYS",
        None,
        "Write keys the collector's Segment-compatible API accepts, each naming its source: comma-separated "
        "`key=name` entries (its events come from source `segment:name`), a bare `key` (source `segment`), or a "
        'JSON object `{"key": "name"}`. Freshness, drift, reconciliation, metrics, alerts, the staging gate and '
        "`etl status` treat each source on its own. Unset: `etl dev` uses `local-write-key`; elsewhere every "
        "Segment call is refused.",
    ),
    Variable(
        "ETL_WEBHOOK_SECRETS",
        None,
        "Partner webhook secrets, `partner=secret` comma-separated (a partner may appear twice while its secret "
        "rotates). Unset: `etl dev` uses `demo-partner=local-webhook-secret`; elsewhere every webhook is refused.",
    ),
    Variable(
        "ETL_COLLECTOR_MAX_BODY_BYTES", "1048576", "Largest partner webhook body the collector accepts (413 above)."
    ),
    Variable(
        "ETL_COLLECTOR_MAX_PENDING",
        "20000",
        "Requests the collector holds waiting for their write; beyond it, it sheds load: 503 with Retry-After, "
        "nothing kept.",
    ),
    Variable("ETL_EVENTS_API_PORT", "9100", "Port of the demo events API that `etl dev` starts on 127.0.0.1."),
    Variable(
        "ETL_EVENTS_API_URL",
        None,
        "URL of the events API's first page. Unset: the demo events API on ETL_EVENTS_API_PORT.",
    ),
    Variable(
        "ETL_EVENTS_API_TOKEN",
        None,
        "Bearer token of the events API (a secret, read when a poll runs). Unset: `etl dev` uses the demo API's token.",
    ),
    Variable(
        "ETL_EVENTS_API_SOURCES",
        None,
        "Path of a JSON file listing several API sources (name, base_url, token_env, page_size, cursor_param, "
        "records_field, next_cursor_field or next_link_field, …); replaces the single source above.",
    ),
    Variable(
        "ETL_LANDING_SWEEP_MINUTES",
        "60",
        "How often the S3 sensor sweeps the whole prefix for re-uploaded or out-of-order keys (0: never).",
    ),
    Variable(
        "ETL_SENSORS_RUNNING",
        "unset (false)",
        "Whether the landing, staged-days and events API sensors run without an operator starting them. "
        "`etl dev` sets it (not with `--paused`); production leaves it unset, so every sensor waits to be started.",
    ),
    Variable(
        "ETL_JSON_ARRAY_KEYS",
        ",".join(DEFAULT_ARRAY_KEYS),
        "Keys under which a landing file that is one JSON document holds its array of events "
        '(`{"events": [...]}`), in the order they are looked for.',
    ),
    Variable(
        "ETL_PII_FIELDS",
        "email,ip,phone",
        "Comma-separated names of personal-data fields, pseudonymized (keyed HMAC) before anything reaches "
        "`events`. A key at any depth matches a name when, in snake_case and any case, it equals it, starts with "
        "`<name>_` or ends with `_<name>` (`email` matches `email_address`, `userEmail`, `traits.email`; `ip` "
        "matches `context.ip`, `ip_address`; not `zip`). With `email` (`ip`) listed, email addresses inside any "
        "string (IP addresses as whole strings) are pseudonymized too, whatever their key.",
    ),
    Variable(
        "ETL_PII_KEY",
        None,
        "Secret HMAC key (16+ characters, e.g. `openssl rand -hex 32`) that pseudonymizes the ETL_PII_FIELDS; read "
        "when a merge runs, never shown. Changing it changes every pseudonym. Unset: `etl dev` uses a local demo "
        "key; elsewhere a merge that meets a PII value fails and loads nothing.",
    ),
    Variable(
        "ETL_RETENTION_DAYS",
        "90",
        "Age in days past which `retention_job` deletes merged staging rows (never pending ones) and raw archive "
        "objects; the batches stay in the ledger, marked pruned.",
    ),
    Variable(
        "ETL_QUALITY_MAX_REJECTED_SHARE",
        "0.05",
        "Share of a source's staged rows of a day the transform may reject (each reason on its own) before the "
        "staging gate holds that source back for the day (its rows wait; the other sources merge); below it, "
        "rejected rows are quarantined and the check warns.",
    ),
    Variable(
        "ETL_QUALITY_MIN_ROWS",
        "100",
        "Rows a share-based rule (rejected share, null share, missing currency) needs before it can fail: on fewer "
        "rows a share means little, so breaking it only warns.",
    ),
    Variable(
        "ETL_QUALITY_MAX_NULL_SHARE",
        "0.5",
        "Share of a day's events a nullable column (session, product on product events, page URL on page views) "
        "may leave empty before its check warns.",
    ),
    Variable(
        "ETL_QUALITY_MAX_CURRENCY_MISSING_SHARE",
        "0.01",
        "Share of a day's priced purchases that may lack an ISO 4217 currency: above it the events check fails "
        "with ERROR (blocking enrichment), at or below it warns.",
    ),
    Variable(
        "ETL_QUALITY_FUTURE_SKEW_MINUTES",
        "5",
        "How far in the future of the check's clock an event's time may be before the events check warns.",
    ),
    Variable(
        "ETL_QUALITY_CHUNK_ROWS",
        "20000",
        "Rows a data check holds in memory at once; a larger day is read and checked chunk by chunk.",
    ),
    Variable(
        "ETL_QUALITY_SAMPLE_ROWS",
        "200000",
        "Staged rows the staging check runs through the transform per day; a larger day is checked on an even "
        "sample of that size (the check says so).",
    ),
    Variable(
        "ETL_FRESHNESS_WARN_MINUTES",
        "30",
        "A source silent this long, or events and the daily tables not updated for this long, warn.",
    ),
    Variable(
        "ETL_FRESHNESS_FAIL_MINUTES",
        "120",
        "A source silent this long fails its freshness check; events and the daily tables turn stale (fail).",
    ),
    Variable(
        "ETL_DRIFT_MIN_ROWS",
        "20",
        "Rows a source must have sent in a day before a field it stopped sending is reported as vanished.",
    ),
    Variable(
        "ETL_ALERT_WEBHOOK_URL",
        None,
        "Incoming-webhook URL (Slack's JSON shape) that failed checks and failed runs are posted to (a secret, "
        "read when the alert sensor runs). Unset: no alert is sent, and the sensor's log says so once.",
    ),
    Variable(
        "ETL_UI_URL",
        None,
        "Base URL of the Dagster UI used for links in alerts. Unset: http://127.0.0.1:ETL_UI_PORT.",
    ),
)

_LOCAL_S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


class S3ClientCredentials(TypedDict, total=False):
    """Credentials as boto3's keyword arguments; none given: the standard AWS chain."""

    aws_access_key_id: str
    aws_secret_access_key: str
    aws_session_token: str


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int, kind: str) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not {kind}: set it to an integer between {minimum} and {maximum}"
        ) from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} is out of range: set it to an integer between {minimum} and {maximum}")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    return _integer(env, name, default, minimum=1, maximum=65535, kind="a port number")


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    return _integer(env, name, default, minimum=0, maximum=10_000, kind="a whole number")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    value = raw.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name}={raw!r} is not true or false: set it to true or false")
    return value in ("true", "1", "yes")


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={raw!r} is not a share: set it to a number between 0 and 1, like 0.05")
    return value


def _day(env: Mapping[str, str], name: str, default: date) -> date:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a date: write it as YYYY-MM-DD") from None


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={raw!r} is not a URL: write it as http(s)://host:port/path")
    return raw


SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def segment_write_keys(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Write key → the source its events come from, from ``ETL_SEGMENT_WRITE_KEYS`` (secrets: read by the collector
    at start, never stored in Settings, never in a message; an error names an entry by its position).

    ``key=name`` entries (or a JSON object ``{"key": "name"}``) give source ``segment:name``; a bare key gives
    ``segment``, the one source of every key before keys had names.
    """
    env = os.environ if env is None else env
    raw = env.get("ETL_SEGMENT_WRITE_KEYS", "").strip()
    if raw.startswith("{"):
        try:
            entries = json.loads(raw)
        except ValueError:
            raise ConfigError(
                'ETL_SEGMENT_WRITE_KEYS starts with "{" but is not a JSON object: write {"key": "name", …}'
            ) from None
        if not all(isinstance(key, str) and isinstance(name, str) for key, name in entries.items()):
            raise ConfigError('ETL_SEGMENT_WRITE_KEYS as JSON maps keys to names, both strings: {"key": "name", …}')
        pairs = [(key.strip(), name.strip(), True) for key, name in entries.items()]
    else:
        pairs = []
        for entry in filter(None, (entry.strip() for entry in raw.split(","))):
            key, separator, name = entry.partition("=")
            pairs.append((key.strip(), name.strip(), bool(separator)))
    keys: dict[str, str] = {}
    for position, (key, name, named) in enumerate(pairs, start=1):
        if not key:
            raise ConfigError(f"ETL_SEGMENT_WRITE_KEYS entry {position} has no key: write key=name, comma-separated")
        if named and not SOURCE_NAME.fullmatch(name):
            raise ConfigError(
                f"ETL_SEGMENT_WRITE_KEYS entry {position} names its source {name!r}: a source name is 1-63 letters, "
                "digits, '.', '_' or '-', starting with a letter or digit"
            )
        source = f"{SEGMENT_SOURCE}:{name}" if named else SEGMENT_SOURCE
        if keys.get(key, source) != source:
            raise ConfigError(
                f"ETL_SEGMENT_WRITE_KEYS entry {position} repeats an earlier key with another source: "
                "a key belongs to one source"
            )
        keys[key] = source
    return keys


def webhook_secrets(env: Mapping[str, str] | None = None) -> dict[str, tuple[str, ...]]:
    """Partner → its secrets, from ``ETL_WEBHOOK_SECRETS`` (``partner=secret,…``)."""
    env = os.environ if env is None else env
    secrets: dict[str, tuple[str, ...]] = {}
    for entry in env.get("ETL_WEBHOOK_SECRETS", "").split(","):
        if not entry.strip():
            continue
        partner, separator, secret = entry.strip().partition("=")
        if not separator or not partner or not secret:
            raise ConfigError(
                f"ETL_WEBHOOK_SECRETS has an entry {partner or entry.strip()!r} without a secret: "
                "write entries as partner=secret, comma-separated"
            )
        secrets[partner] = (*secrets.get(partner, ()), secret)
    return secrets


def parse_database_url(raw: str, name: str = "DATABASE_URL") -> URL:
    """Parse a PostgreSQL URL, accepting the common spellings (postgres://, postgresql+driver://)."""
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw.removeprefix("postgres://")
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(
            f"{name} is not a database URL: write it as postgresql://user:password@host:5432/database"
        ) from None
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"{name} points at {url.get_backend_name()!r}: the platform needs PostgreSQL (postgresql://…)"
        )
    if not url.database:
        raise ConfigError(f"{name} names no database: add one after the host, e.g. …:5432/warehouse")
    return url


def with_driver(url: URL, driver: str) -> URL:
    """The same URL with an explicit DBAPI driver (``psycopg`` for the platform, ``psycopg2`` for Dagster)."""
    return url.set(drivername=f"postgresql+{driver}")


def redact(url: URL) -> str:
    """The URL as it may be printed: the password hidden."""
    return url.render_as_string(hide_password=True)


ROLE_URL_VARIABLES = ("ETL_INGEST_DATABASE_URL", "ETL_TRANSFORM_DATABASE_URL", "ETL_READER_DATABASE_URL")
DATABASE_URL_VARIABLES = ("DATABASE_URL", "DAGSTER_PG_URL", *ROLE_URL_VARIABLES)


SECRET_VARIABLES = frozenset(
    (
        "ETL_PII_KEY",
        "ETL_EVENTS_API_TOKEN",
        "ETL_SEGMENT_WRITE_KEYS",
        "ETL_WEBHOOK_SECRETS",
        "ETL_ALERT_WEBHOOK_URL",
        "AWS_SECRET_ACCESS_KEY",
    )
)


def displayed(name: str, raw: str) -> str:
    """A variable's value as it may be printed: database URLs without their password, secrets not at all."""
    if name in DATABASE_URL_VARIABLES:
        try:
            return redact(parse_database_url(raw, name))
        except ConfigError:
            return "(not a valid URL)"
    if name in SECRET_VARIABLES:
        return "(set; a secret, not shown)"
    return raw


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the data checks (see ``etl_assets.warehouse.quality``)."""

    max_rejected_share: float = 0.05
    min_rows: int = 100
    max_null_share: float = 0.5
    max_currency_missing_share: float = 0.01
    future_skew_minutes: int = 5
    chunk_rows: int = 20_000
    sample_rows: int = 200_000
    drift_min_rows: int = 20


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _database_tls(env: Mapping[str, str]) -> tuple[str | None, Path | None]:
    """ETL_DB_SSLMODE and ETL_DB_SSLROOTCERT, checked together (a verifying mode needs the CA)."""
    mode = env.get("ETL_DB_SSLMODE") or None
    if mode is not None and mode not in SSL_MODES:
        raise ConfigError(f"ETL_DB_SSLMODE={mode!r} is not an sslmode: set it to one of {', '.join(SSL_MODES)}")
    raw = env.get("ETL_DB_SSLROOTCERT") or None
    root_cert = Path(raw).expanduser().resolve() if raw else None
    if root_cert is not None and not root_cert.is_file():
        state = "is not a file" if root_cert.exists() else "does not exist"
        raise ConfigError(
            f"ETL_DB_SSLROOTCERT={raw!r} {state}: point it at the CA certificate (PEM) of the database server"
        )
    if mode in ("verify-ca", "verify-full") and root_cert is None:
        raise ConfigError(
            f"ETL_DB_SSLMODE={mode} needs ETL_DB_SSLROOTCERT: set it to the path of the CA certificate (PEM) "
            "that signed the server's certificate"
        )
    return mode, root_cert


def with_ssl(url: URL, params: Mapping[str, str]) -> URL:
    """``url`` with the TLS parameters added to its query, except those the URL already names (the URL wins)."""
    missing = {name: value for name, value in params.items() if name not in url.query}
    return url.update_query_dict(missing) if missing else url


def _freshness(env: Mapping[str, str]) -> tuple[int, int]:
    kind = "a number of minutes"
    warn = _integer(env, "ETL_FRESHNESS_WARN_MINUTES", 30, minimum=1, maximum=60 * 24 * 30, kind=kind)
    fail = _integer(env, "ETL_FRESHNESS_FAIL_MINUTES", 120, minimum=1, maximum=60 * 24 * 30, kind=kind)
    if warn >= fail:
        raise ConfigError(
            f"ETL_FRESHNESS_WARN_MINUTES={warn} is not below ETL_FRESHNESS_FAIL_MINUTES={fail}: warn before failing"
        )
    return warn, fail


def alert_webhook_url(env: Mapping[str, str] | None = None) -> str | None:
    """The alert webhook URL (a secret: read when needed, never stored in config or shown, even when wrong)."""
    raw = (os.environ if env is None else env).get("ETL_ALERT_WEBHOOK_URL")
    if raw in (None, ""):
        return None
    if not raw.startswith(("http://", "https://")):
        raise ConfigError(
            "ETL_ALERT_WEBHOOK_URL is not a URL (its value is a secret and not shown): write it as https://host/path"
        )
    return raw


DEFAULT_PII_FIELDS = ("email", "ip", "phone")
PII_KEY_MIN_CHARS = 16


def _pii_fields(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("ETL_PII_FIELDS") or ""
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    for name in names:
        if not name.replace("_", "").replace("-", "").isalnum() or not name.isascii() or not name[0].isalpha():
            raise ConfigError(
                f"ETL_PII_FIELDS names {name!r}, which is not a field name: list names like email,ip,phone "
                "(each is matched at any depth, so write ip, not context.ip)"
            )
    return names or DEFAULT_PII_FIELDS


def _json_array_keys(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("ETL_JSON_ARRAY_KEYS") or ""
    keys = tuple(dict.fromkeys(key.strip() for key in raw.split(",") if key.strip()))
    for key in keys:
        if "." in key:
            raise ConfigError(
                f"ETL_JSON_ARRAY_KEYS names {key!r}: list top-level keys without dots, like events,data,records,batch"
            )
    return keys or DEFAULT_ARRAY_KEYS


def pii_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The HMAC key that pseudonymizes PII (a secret: read when a run needs it, never stored in Settings or shown)."""
    raw = (os.environ if env is None else env).get("ETL_PII_KEY")
    if raw in (None, ""):
        return None
    if len(raw) < PII_KEY_MIN_CHARS:
        raise ConfigError(
            f"ETL_PII_KEY is shorter than {PII_KEY_MIN_CHARS} characters (its value is a secret and not shown): "
            "set it to a long random secret, e.g. the output of `openssl rand -hex 32`"
        )
    return raw.encode()


def pii_policy(env: Mapping[str, str] | None = None) -> PiiPolicy:
    """What counts as PII (``ETL_PII_FIELDS``) and the key that pseudonymizes it (``ETL_PII_KEY``), as ingest and
    the merge read them from the environment when they need them."""
    env = os.environ if env is None else env
    return PiiPolicy(_pii_fields(env), pii_key(env))


@dataclass(frozen=True)
class Settings:
    etl_home: Path
    database_url: URL | None
    dagster_pg_url: URL | None
    pg_port: int
    ui_port: int
    s3_port: int
    s3_endpoint_url: str | None
    s3_is_external: bool
    aws_region: str
    landing_bucket: str
    landing_prefix: str
    archive_bucket: str
    db_pool_size: int
    db_max_overflow: int
    first_day: date = date(2025, 1, 1)
    sensor_max_runs: int = 25
    merge_days_at_once: int = 2
    landing_run_max_files: int = 200
    landing_run_max_bytes: int = 64 * 2**20
    landing_sweep_minutes: int = 60
    json_array_keys: tuple[str, ...] = DEFAULT_ARRAY_KEYS
    sensors_running: bool = False
    pii_fields: tuple[str, ...] = DEFAULT_PII_FIELDS
    pii_key_configured: bool = False
    retention_days: int = 90
    collector_port: int = 9200
    collector_max_body_bytes: int = 1_048_576
    collector_max_pending: int = 20_000
    events_api_port: int = 9100
    events_api_url: str | None = None
    events_api_sources_file: Path | None = None
    quality: QualitySettings = QualitySettings()
    freshness_warn_minutes: int = 30
    freshness_fail_minutes: int = 120
    alert_webhook_configured: bool = False
    db_pgbouncer: bool = False
    role_urls: dict[str, URL] = field(default_factory=dict)
    """The configured role URLs by variable name (ETL_INGEST_DATABASE_URL, …)."""
    ui_url: str | None = None
    db_sslmode: str | None = None
    db_sslrootcert: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("ETL_HOME") or PROJECT_ROOT / ".etl").expanduser().resolve()
        database_url = parse_database_url(env["DATABASE_URL"]) if env.get("DATABASE_URL") else None
        dagster_pg_url = (
            parse_database_url(env["DAGSTER_PG_URL"], "DAGSTER_PG_URL") if env.get("DAGSTER_PG_URL") else None
        )
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"AWS_ENDPOINT_URL_S3={endpoint!r} is not a URL: write it as http(s)://host:port")
        external = bool(endpoint or env.get("AWS_ACCESS_KEY_ID"))
        buckets = {
            name: env.get(name) or default
            for name, default in (("ETL_LANDING_BUCKET", "events-landing"), ("ETL_ARCHIVE_BUCKET", "events-archive"))
        }
        for name, bucket in buckets.items():
            if (
                not (3 <= len(bucket) <= 63)
                or not bucket.replace("-", "").replace(".", "").isalnum()
                or bucket != bucket.lower()
            ):
                raise ConfigError(
                    f"{name}={bucket!r} is not a valid S3 bucket name: use 3-63 lowercase letters, digits, '-' or '.'"
                )
        prefix = env.get("ETL_LANDING_PREFIX", "landing/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        db_sslmode, db_sslrootcert = _database_tls(env)
        return cls(
            etl_home=home,
            database_url=database_url,
            dagster_pg_url=dagster_pg_url,
            pg_port=_port(env, "ETL_PG_PORT", 5433),
            ui_port=_port(env, "ETL_UI_PORT", 3000),
            s3_port=_port(env, "ETL_S3_PORT", 9000),
            s3_endpoint_url=endpoint,
            s3_is_external=external,
            aws_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            landing_bucket=buckets["ETL_LANDING_BUCKET"],
            landing_prefix=prefix,
            archive_bucket=buckets["ETL_ARCHIVE_BUCKET"],
            db_pool_size=_count(env, "ETL_DB_POOL_SIZE", 5),
            db_max_overflow=_count(env, "ETL_DB_MAX_OVERFLOW", 5),
            db_sslmode=db_sslmode,
            db_sslrootcert=db_sslrootcert,
            first_day=_day(env, "ETL_FIRST_DAY", date(2025, 1, 1)),
            sensor_max_runs=_integer(env, "ETL_SENSOR_MAX_RUNS", 25, minimum=1, maximum=10_000, kind="a whole number"),
            merge_days_at_once=_integer(env, "ETL_MERGE_DAYS_AT_ONCE", 2, minimum=1, maximum=64, kind="a whole number"),
            landing_run_max_files=_integer(
                env, "ETL_LANDING_RUN_MAX_FILES", 200, minimum=1, maximum=10_000, kind="a whole number"
            ),
            landing_run_max_bytes=_integer(
                env, "ETL_LANDING_RUN_MAX_BYTES", 64 * 2**20, minimum=1, maximum=2**40, kind="a number of bytes"
            ),
            landing_sweep_minutes=_count(env, "ETL_LANDING_SWEEP_MINUTES", 60),
            json_array_keys=_json_array_keys(env),
            sensors_running=_flag(env, "ETL_SENSORS_RUNNING", False),
            pii_fields=_pii_fields(env),
            pii_key_configured=pii_key(env) is not None,
            retention_days=_integer(env, "ETL_RETENTION_DAYS", 90, minimum=1, maximum=36_500, kind="a number of days"),
            collector_port=_port(env, "ETL_COLLECTOR_PORT", 9200),
            collector_max_body_bytes=_integer(
                env, "ETL_COLLECTOR_MAX_BODY_BYTES", 1_048_576, minimum=1024, maximum=64 * 1024 * 1024, kind="a size"
            ),
            collector_max_pending=_integer(
                env, "ETL_COLLECTOR_MAX_PENDING", 20_000, minimum=1, maximum=1_000_000, kind="a whole number"
            ),
            events_api_port=_port(env, "ETL_EVENTS_API_PORT", 9100),
            events_api_url=_url(env, "ETL_EVENTS_API_URL"),
            events_api_sources_file=Path(env["ETL_EVENTS_API_SOURCES"]).expanduser()
            if env.get("ETL_EVENTS_API_SOURCES")
            else None,
            quality=QualitySettings(
                max_rejected_share=_share(env, "ETL_QUALITY_MAX_REJECTED_SHARE", 0.05),
                min_rows=_integer(
                    env, "ETL_QUALITY_MIN_ROWS", 100, minimum=1, maximum=10_000_000, kind="a whole number"
                ),
                max_null_share=_share(env, "ETL_QUALITY_MAX_NULL_SHARE", 0.5),
                max_currency_missing_share=_share(env, "ETL_QUALITY_MAX_CURRENCY_MISSING_SHARE", 0.01),
                future_skew_minutes=_integer(
                    env, "ETL_QUALITY_FUTURE_SKEW_MINUTES", 5, minimum=0, maximum=7 * 24 * 60, kind="a whole number"
                ),
                chunk_rows=_integer(
                    env, "ETL_QUALITY_CHUNK_ROWS", 20_000, minimum=100, maximum=10_000_000, kind="a whole number"
                ),
                sample_rows=_integer(
                    env, "ETL_QUALITY_SAMPLE_ROWS", 200_000, minimum=100, maximum=100_000_000, kind="a whole number"
                ),
                drift_min_rows=_integer(
                    env, "ETL_DRIFT_MIN_ROWS", 20, minimum=1, maximum=10_000_000, kind="a whole number"
                ),
            ),
            freshness_warn_minutes=_freshness(env)[0],
            freshness_fail_minutes=_freshness(env)[1],
            alert_webhook_configured=alert_webhook_url(env) is not None,
            db_pgbouncer=_flag(env, "ETL_DB_PGBOUNCER", False),
            role_urls={name: parse_database_url(env[name], name) for name in ROLE_URL_VARIABLES if env.get(name)},
            ui_url=_url(env, "ETL_UI_URL"),
        )

    @property
    def db_ssl_params(self) -> dict[str, str]:
        """libpq's TLS parameters from ETL_DB_SSLMODE / ETL_DB_SSLROOTCERT: only those that are set."""
        params = {"sslmode": self.db_sslmode, "sslrootcert": str(self.db_sslrootcert) if self.db_sslrootcert else None}
        return {name: value for name, value in params.items() if value is not None}

    @property
    def ui_base_url(self) -> str:
        """Where links in alerts point: ETL_UI_URL, or the local UI."""
        return (self.ui_url or f"http://127.0.0.1:{self.ui_port}").rstrip("/")

    @property
    def demo_events_api_url(self) -> str:
        return f"http://127.0.0.1:{self.events_api_port}/events"

    @property
    def ingest_url(self) -> URL:
        """Where ingestion writes: ETL_INGEST_DATABASE_URL, or the warehouse URL."""
        return self.role_urls.get("ETL_INGEST_DATABASE_URL") or self.warehouse_url

    @property
    def warehouse_url(self) -> URL:
        """DATABASE_URL, or the ``warehouse`` database of the embedded PostgreSQL that ``etl dev`` runs."""
        if self.database_url is not None:
            return self.database_url
        return URL.create("postgresql", username="postgres", host="127.0.0.1", port=self.pg_port, database="warehouse")

    @staticmethod
    def local_s3_credentials() -> dict[str, str]:
        """Credentials the local S3 endpoint accepts (moto checks none); boto3 needs some to sign."""
        return dict(_LOCAL_S3_CREDENTIALS)

    @staticmethod
    def local_s3_client_credentials() -> S3ClientCredentials:
        """The same credentials as boto3's keyword arguments (``aws_access_key_id``, ``aws_secret_access_key``)."""
        return S3ClientCredentials(
            aws_access_key_id=_LOCAL_S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_LOCAL_S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

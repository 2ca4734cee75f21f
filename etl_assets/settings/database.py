"""PostgreSQL: the URLs of the warehouse, of Dagster's storage and of each role, the pool, PgBouncer and TLS; and
the URL helpers (parse, driver, TLS parameters, redaction)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from etl_assets.settings.declare import ConfigError, Section, declaration, setting
from etl_assets.settings.parsers import count, flag

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


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


def postgres_url(name: str, raw: str) -> URL:
    return parse_database_url(raw, name)


def with_driver(url: URL, driver: str) -> URL:
    """The same URL with an explicit DBAPI driver (``psycopg`` for the platform, ``psycopg2`` for Dagster)."""
    return url.set(drivername=f"postgresql+{driver}")


def redact(url: URL) -> str:
    """The URL as it may be printed: the password hidden."""
    return url.render_as_string(hide_password=True)


def with_ssl(url: URL, params: Mapping[str, str]) -> URL:
    """``url`` with the TLS parameters added to its query, except those the URL already names (the URL wins)."""
    missing = {name: value for name, value in params.items() if name not in url.query}
    return url.update_query_dict(missing) if missing else url


def ssl_mode(name: str, raw: str) -> str:
    if raw not in SSL_MODES:
        raise ConfigError(f"{name}={raw!r} is not an sslmode: set it to one of {', '.join(SSL_MODES)}")
    return raw


def root_certificate(name: str, raw: str) -> Path:
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        raise ConfigError(f"{name}={raw!r} {state}: point it at the CA certificate (PEM) of the database server")
    return path


@dataclass(frozen=True)
class DatabaseSettings(Section):
    database_url: URL | None = setting(
        "DATABASE_URL",
        postgres_url,
        help="Warehouse PostgreSQL URL (`postgresql://user:pass@host:5432/db`). Unset: `etl dev` starts an embedded "
        "PostgreSQL and uses its `warehouse` database.",
    )
    dagster_pg_url: URL | None = setting(
        "DAGSTER_PG_URL",
        postgres_url,
        help="Dagster's instance storage (runs, events, schedules). Unset: the `dagster` database on the warehouse's "
        "server. Write it as `postgresql+psycopg2://…` (with SQLAlchemy 2.1 a bare `postgresql://` means psycopg 3, "
        "which Dagster's storage does not use; `etl dev` names the driver for you).",
    )
    ingest_database_url: URL | None = setting(
        "ETL_INGEST_DATABASE_URL",
        postgres_url,
        help="URL of the ingestion role (member of `etl_ingest`: writes raw_batches, staging and quarantine, reads "
        "nothing downstream) used by the ingest runs, the API poller and the collector. Unset: `DATABASE_URL`; "
        "`etl dev` sets it to a local `ingest` user.",
    )
    transform_database_url: URL | None = setting(
        "ETL_TRANSFORM_DATABASE_URL",
        postgres_url,
        help="URL of the transform role (member of `etl_transform`: reads staging, writes events and the daily "
        "tables) used by the merge, the enrichment and the checks. Unset: `DATABASE_URL`; `etl dev` sets it to a "
        "local `transform` user.",
    )
    reader_database_url: URL | None = setting(
        "ETL_READER_DATABASE_URL",
        postgres_url,
        help="URL for analysts and dashboards (member of `etl_reader`: reads events and the daily tables only). The "
        "platform does not use it; `etl dev` creates a local `reader` user and prints its URL.",
    )
    db_pool_size: int = setting(
        "ETL_DB_POOL_SIZE", count, default="5", help="SQLAlchemy connection pool size per process."
    )
    db_max_overflow: int = setting(
        "ETL_DB_MAX_OVERFLOW", count, default="5", help="Connections allowed beyond the pool size under load."
    )
    db_pgbouncer: bool = setting(
        "ETL_DB_PGBOUNCER",
        flag,
        default="false",
        help="true when the warehouse URLs point at PgBouncer in transaction pooling mode: psycopg then prepares no "
        "server-side statements, which PgBouncer before 1.21 cannot track. Keep `DAGSTER_PG_URL` on PostgreSQL "
        "itself.",
    )
    db_sslmode: str | None = setting(
        "ETL_DB_SSLMODE",
        ssl_mode,
        help="TLS to PostgreSQL for every connection the platform opens (warehouse engines, `etl dev`'s checks, the "
        "Dagster storage URL `etl dev` builds): `disable`, `allow`, `prefer`, `require`, `verify-ca` or "
        "`verify-full`. Unset: libpq's default (`prefer`). An `sslmode` already in a URL's query wins. A "
        "`DAGSTER_PG_URL` you set yourself outside `etl dev` needs its own `?sslmode=…&sslrootcert=…`.",
    )
    db_sslrootcert: Path | None = setting(
        "ETL_DB_SSLROOTCERT",
        root_certificate,
        help="Path of the CA certificate (PEM) that signed the server's certificate; must exist; required by "
        "`verify-ca` and `verify-full`. An `sslrootcert` already in a URL's query wins.",
    )

    def _check(self) -> None:
        if self.db_sslmode in ("verify-ca", "verify-full") and self.db_sslrootcert is None:
            raise ConfigError(
                f"ETL_DB_SSLMODE={self.db_sslmode} needs ETL_DB_SSLROOTCERT: set it to the path of the CA "
                "certificate (PEM) that signed the server's certificate"
            )

    @property
    def role_urls(self) -> dict[str, URL]:
        """The configured role URLs by variable name (ETL_INGEST_DATABASE_URL, …)."""
        urls = {declaration(DatabaseSettings, name).name: getattr(self, name) for name in ROLE_URL_FIELDS}
        return {name: url for name, url in urls.items() if url is not None}

    @property
    def db_ssl_params(self) -> dict[str, str]:
        """libpq's TLS parameters from ETL_DB_SSLMODE / ETL_DB_SSLROOTCERT: only those that are set."""
        params = {"sslmode": self.db_sslmode, "sslrootcert": str(self.db_sslrootcert) if self.db_sslrootcert else None}
        return {name: value for name, value in params.items() if value is not None}


ROLE_URL_FIELDS = ("ingest_database_url", "transform_database_url", "reader_database_url")

"""Shared fixtures: a real PostgreSQL and a real S3 HTTP endpoint on 127.0.0.1, once per session.

Tests that need isolation get a database of their own, cloned from a migrated template (a copy is
far faster than running the migrations again). Unit tests use none of these.

The suite runs on pytest-xdist workers (`-n` in pyproject.toml's addopts). Each worker is a session of its own:
its own PostgreSQL, S3 endpoint, free ports and temporary folders, so tests never share them by accident. The
one exception is the `etl dev` that the end-to-end tests share (`dev_platform` and `failed_check` in
tests/e2e/conftest.py): every test that uses either fixture, directly or through another fixture, is put in the
xdist group ``etl_dev`` here, automatically, so one worker runs them all against one platform. A new test that
uses `dev_platform` needs nothing more. A test that needs something else only one process may hold at a time
(a fixed port, a fixed file) marks itself ``@pytest.mark.xdist_group("<name>")`` with a name of its own.
`uv run pytest -n0` runs everything in one process, as does `-p no:xdist`.

Hypothesis runs with no per-example deadline (profile ``etl``, loaded by default; ``HYPOTHESIS_PROFILE`` picks
another): on a loaded machine one example can take seconds, which says nothing about the code under test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql
from sqlalchemy import Engine

from etl_assets.localstack.postgres import EmbeddedPostgres
from etl_assets.localstack.processes import free_port
from etl_assets.localstack.s3 import LocalS3
from etl_assets.sources.s3 import s3_client
from etl_assets.warehouse import migrate
from etl_assets.warehouse.engine import create_warehouse_engine

TEMPLATE_DB = "etl_template"
S3_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
TEST_PII_KEY = "test-pii-key-0123456789abcdef"

SHARED_PLATFORM_FIXTURES = {"dev_platform", "failed_check"}
SHARED_PLATFORM_GROUP = "etl_dev"
"""The xdist group of every test that uses the session's one `etl dev`."""

settings.register_profile("etl", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "etl"))


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """With pytest-xdist turned off (`-p no:xdist`), the default options' `--numprocesses`, `--maxprocesses` and
    `--dist` are accepted and change nothing, so the suite runs in one process."""
    if pluginmanager.has_plugin("xdist"):
        return
    group = parser.getgroup("xdist", "pytest-xdist is turned off (-p no:xdist): these options are ignored")
    group.addoption("--numprocesses", dest="numprocesses", default=None)
    group.addoption("--maxprocesses", dest="maxprocesses", default=None)
    group.addoption("--dist", dest="dist", default="no")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SHARED_PLATFORM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group(SHARED_PLATFORM_GROUP))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres") / "data", free_port())
    server.start()
    yield server
    server.stop()


def _create_database(server: EmbeddedPostgres, name: str, template: str | None = None) -> str:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(statement)
    return server.url(name)


def _drop_database(server: EmbeddedPostgres, name: str) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def migrated_template(postgres_server: EmbeddedPostgres) -> str:
    url = _create_database(postgres_server, TEMPLATE_DB)
    engine = create_warehouse_engine(url, pool_size=1, max_overflow=0)
    migrate.upgrade(engine)
    engine.dispose()
    return TEMPLATE_DB


@pytest.fixture
def empty_database_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A new, empty database (no migrations run)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield _create_database(postgres_server, name)
    _drop_database(postgres_server, name)


@contextmanager
def migrated_database(server: EmbeddedPostgres, template: str) -> Iterator[str]:
    """A database of its own at the newest migration (a copy of ``template``), dropped afterwards; its URL."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield _create_database(server, name, template=template)
    _drop_database(server, name)


@pytest.fixture
def warehouse_url(postgres_server: EmbeddedPostgres, migrated_template: str) -> Iterator[str]:
    """A database of this test's own, at the newest migration."""
    with migrated_database(postgres_server, migrated_template) as url:
        yield url


@pytest.fixture
def warehouse_engine(warehouse_url: str) -> Iterator[Engine]:
    engine = create_warehouse_engine(warehouse_url, pool_size=2, max_overflow=2)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = LocalS3(free_port(), tmp_path_factory.mktemp("s3") / "s3.log")
    server.start()
    yield server.endpoint_url
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str):
    return s3_client(s3_endpoint, "us-east-1", **S3_CREDENTIALS)


@pytest.fixture
def buckets(s3) -> dict[str, str]:
    """A landing and an archive bucket of this test's own."""
    return new_buckets(s3)


def new_buckets(s3) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    names = {"landing": f"landing-{suffix}", "archive": f"archive-{suffix}"}
    for name in names.values():
        s3.create_bucket(Bucket=name)
    return names


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def pipeline_env(
    monkeypatch: pytest.MonkeyPatch, warehouse_url: str, s3_endpoint: str, buckets: dict[str, str]
) -> dict:
    """The environment the code location reads, pointed at this test's database and buckets."""
    values = pipeline_variables(warehouse_url, s3_endpoint, buckets)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def pipeline_variables(warehouse_url: str, s3_endpoint: str, buckets: dict[str, str]) -> dict[str, str]:
    """The environment the code location reads, pointed at a database and buckets."""
    return {
        "DATABASE_URL": warehouse_url,
        "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "AWS_ACCESS_KEY_ID": S3_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": S3_CREDENTIALS["aws_secret_access_key"],
        "AWS_REGION": "us-east-1",
        "ETL_LANDING_BUCKET": buckets["landing"],
        "ETL_ARCHIVE_BUCKET": buckets["archive"],
        "ETL_LANDING_PREFIX": "landing/",
        "ETL_PII_KEY": TEST_PII_KEY,
    }


@pytest.fixture
def definitions(pipeline_env: dict):
    """The real code location's definitions, bound to this test's database and buckets."""
    from etl_assets.definitions import defs

    return defs()

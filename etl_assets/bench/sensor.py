"""The S3 sensor's tick with a bucket of 100,000 objects it has seen, and with 1,000 new ones (grouped into runs).

The objects live in a moto server run in a thread of the bench process and filled through moto's own
backend (100,000 PUTs over HTTP would take minutes; the objects are the same either way). The ticks run in a
process of their own (``python -m etl_assets.bench.sensor``) that evaluates the real ``landing_files_sensor``
of the code location, with its real resources, listing over HTTP and checking the ledger in PostgreSQL.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import psycopg

SEEN_PREFIX = "landing/2025-08-01/"
NEW_PREFIX = "landing/2025-08-02/"
BODY = b'{"id": "e", "type": "page_view", "timestamp": "2025-08-01T00:00:00Z"}\n'
NOTHING_NEW_TICKS = 5


@dataclass(frozen=True)
class SensorTicks:
    seen_objects: int
    new_objects: int
    nothing_new_seconds: float
    new_objects_seconds: float
    new_runs_requested: int
    new_files_requested: int
    sweep_page_seconds: float
    peak_rss_mb: float


def _key(prefix: str, number: int) -> str:
    return f"{prefix}part-{number:06d}.jsonl"


def fill_bucket(bucket: str, seen: int, database_url: str) -> str:
    """Put ``seen`` objects into the threaded moto's bucket and into the ledger; return the last key."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for number in range(seen):
        backend.put_object(bucket, _key(SEEN_PREFIX, number), BODY)
    etag = hashlib.md5(BODY).hexdigest()
    ledger = io.StringIO()
    for number in range(seen):
        key = _key(SEEN_PREFIX, number)
        ledger.write(f"{key}#{etag}\ts3\ts3://{bucket}/{key}\t{hashlib.sha256(BODY).hexdigest()}\t{len(BODY)}\n")
    columns = "batch_id, source, source_uri, sha256, byte_count"
    with (
        psycopg.connect(database_url) as conn,
        conn.cursor() as cursor,
        cursor.copy(f"COPY raw_batches ({columns}) FROM STDIN") as copy,
    ):
        copy.write(ledger.getvalue())
    return _key(SEEN_PREFIX, seen - 1)


def measure(database_url: str, seen: int, new: int, env: dict[str, str]) -> SensorTicks:
    """Start moto in a thread, fill it, and time the ticks in a child process."""
    from moto.server import ThreadedMotoServer

    from etl_assets.localstack.processes import free_port
    from etl_assets.settings import Settings
    from etl_assets.sources.s3 import s3_client

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        bucket = "bench-sensor-landing"
        s3_client(endpoint, "us-east-1", **Settings.local_s3_client_credentials()).create_bucket(Bucket=bucket)
        last_seen = fill_bucket(bucket, seen, database_url)
        child_env = {
            **env,
            **Settings.local_s3_credentials(),
            "DATABASE_URL": database_url,
            "AWS_ENDPOINT_URL_S3": endpoint,
            "ETL_LANDING_BUCKET": bucket,
            "ETL_LANDING_PREFIX": "landing/",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "etl_assets.bench.sensor", last_seen, str(new)],
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"the sensor ticks failed: {stderr.strip().splitlines()[-1] if stderr else ''}")
        figures = json.loads(stdout.strip().splitlines()[-1])
        return SensorTicks(seen_objects=seen, new_objects=new, **figures)
    finally:
        server.stop()


def _tick(definitions: Any, cursor: str) -> tuple[float, Any]:
    import dagster as dg

    sensor = definitions.resolve_sensor_def("landing_files_sensor")
    with dg.build_sensor_context(
        cursor=cursor, definitions=definitions, resources=definitions.resources, sensor_name=sensor.name
    ) as context:
        started = time.perf_counter()
        result = sensor(context)
        return time.perf_counter() - started, result


def _put_new_objects(definitions: Any, count: int) -> None:
    store = definitions.resources["object_store"]
    client = store.client()
    for number in range(count):
        client.put_object(Bucket=store.landing_bucket, Key=_key(NEW_PREFIX, number), Body=BODY)


def main(last_seen: str, new: int) -> None:
    from etl_assets.bench.paths import peak_rss_mb
    from etl_assets.definitions import defs
    from etl_assets.defs.ingest import requested_objects
    from etl_assets.sources.landing import LandingCursor

    definitions = defs()
    now = time.time()
    caught_up = LandingCursor(after=last_seen, last_sweep=now).to_json()
    _tick(definitions, caught_up)  # the first tick connects and builds the client, as the daemon's first does
    quiet = [_tick(definitions, caught_up)[0] for _ in range(NOTHING_NEW_TICKS)]
    # A sweep page: 1,000 seen keys listed from the start and checked against the 100,000-row ledger.
    sweeping = LandingCursor(after=last_seen, sweep_after=None, sweeping=True, last_sweep=now).to_json()
    sweep_seconds, _ = _tick(definitions, sweeping)
    # New keys sort after the cursor (a later day's prefix): one listing page, runs of up to
    # ETL_LANDING_RUN_MAX_FILES files each.
    _put_new_objects(definitions, new)
    new_seconds, new_result = _tick(definitions, caught_up)
    print(
        json.dumps(
            {
                "nothing_new_seconds": statistics.median(quiet),
                "new_objects_seconds": new_seconds,
                "new_runs_requested": len(new_result.run_requests or []),
                "new_files_requested": sum(
                    len(requested_objects(request.run_config)) for request in new_result.run_requests or []
                ),
                "sweep_page_seconds": sweep_seconds,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))

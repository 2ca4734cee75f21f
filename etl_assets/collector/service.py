"""Running the collector: its parts built from the environment, served by uvicorn.

``etl collector`` (and ``etl dev``, which starts it next to the rest) call ``serve``. Secrets (write
keys, webhook secrets, the database URL) are read from the environment here, once, at start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import uvicorn
from starlette.applications import Starlette

from etl_assets.collector.app import CollectorConfig, create_app
from etl_assets.collector.metrics import CollectorMetrics
from etl_assets.collector.writer import GroupResult, StagingWriter
from etl_assets.settings import Settings, segment_write_keys, webhook_secrets
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse.engine import create_warehouse_engine, ping

ARCHIVE_RETRIES = 2
ARCHIVE_READ_TIMEOUT_SECONDS = 5.0
"""The archive write of a flush gives up after a few seconds of 503s or silence (instead of a pipeline step's
minute), so its requests are answered 503 with ``Retry-After`` while their senders still wait for an answer."""


def build_app(settings: Settings) -> Starlette:
    engine = create_warehouse_engine(
        settings.ingest_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        connect_timeout=3,
        ssl=settings.db_ssl_params,
        pgbouncer=settings.db_pgbouncer,
    )
    s3 = s3_client(
        settings.s3_endpoint_url,
        settings.aws_region,
        retries=ARCHIVE_RETRIES,
        read_timeout=ARCHIVE_READ_TIMEOUT_SECONDS,
    )
    config = CollectorConfig(
        write_keys=segment_write_keys(),
        webhook_secrets=webhook_secrets(),
        max_webhook_bytes=settings.collector_max_body_bytes,
        max_pending_requests=settings.collector_max_pending,
    )
    metrics = CollectorMetrics()

    def count_rows(result: GroupResult) -> None:
        if result.counts is not None:
            metrics.rows_staged.inc(result.counts.staged)

    writer = StagingWriter(
        engine,
        s3,
        settings.archive_bucket,
        lambda: AcceptedTimes.through_today(settings.first_day, datetime.now(UTC)),
        on_group=count_rows,
    )

    return create_app(config, writer.write, partial(ping, engine), metrics)


def serve(settings: Settings, host: str = "127.0.0.1") -> None:
    uvicorn.run(build_app(settings), host=host, port=settings.collector_port, log_level="warning")


def main() -> None:
    """``python -m etl_assets.collector.service``: serve on 127.0.0.1:ETL_COLLECTOR_PORT (``--host`` to change)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    serve(Settings.from_env(), host=parser.parse_args().host)


if __name__ == "__main__":
    main()

"""The pipeline's counters for Prometheus, read from the warehouse at each scrape.

The collector counts what it answers itself (``etl_assets.collector.metrics``); the pipeline's state
lives in the warehouse (what is staged, waiting, quarantined, held back per source, when each source last sent, when events
last changed), so ``etl metrics`` serves it by querying on each scrape: cheap aggregate queries and the
planner's row estimate of ``events``, never a scan of a day.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

STAGING_BY_STATUS = text("SELECT status, count(*) FROM staging_status GROUP BY status")
QUARANTINE_BY_STAGE = text(
    "SELECT stage, resolved_at IS NOT NULL, count(*) FROM quarantine GROUP BY stage, resolved_at IS NOT NULL"
)
BATCHES_BY_SOURCE = text(
    "SELECT source, count(*), coalesce(sum(record_count), 0), extract(epoch FROM max(received_at)) "
    "FROM raw_batches GROUP BY source"
)
HELD_BY_SOURCE = text("SELECT source, count(*), coalesce(sum(rows_waiting), 0) FROM held_sources GROUP BY source")
EVENTS_ESTIMATE = text(
    "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
)
LAST_MERGE = text("SELECT extract(epoch FROM max(merged_at)) FROM batch_days")


class PipelineMetrics(Collector):
    """A Prometheus collector whose every scrape reads the warehouse's current figures."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        staging = GaugeMetricFamily("etl_staging_rows", "Staging rows by status.", labels=["status"])
        quarantine = GaugeMetricFamily(
            "etl_quarantine_rows",
            "Quarantined records by stage and whether a re-drive resolved them.",
            labels=["stage", "resolved"],
        )
        batches = GaugeMetricFamily("etl_source_batches", "Batches received, by source.", labels=["source"])
        records = GaugeMetricFamily("etl_source_records", "Records received, by source.", labels=["source"])
        last_batch = GaugeMetricFamily(
            "etl_source_last_batch_timestamp_seconds", "When each source last sent a batch.", labels=["source"]
        )
        held_days = GaugeMetricFamily(
            "etl_source_held_days", "Days the staging gate holds each source back on.", labels=["source"]
        )
        held_rows = GaugeMetricFamily(
            "etl_source_held_rows", "Rows of each source waiting behind a hold of the staging gate.", labels=["source"]
        )
        with self.engine.connect() as conn:
            for source, days, rows in conn.execute(HELD_BY_SOURCE):
                held_days.add_metric([source], days)
                held_rows.add_metric([source], rows)
            for status, count in conn.execute(STAGING_BY_STATUS):
                staging.add_metric([status], count)
            for stage, resolved, count in conn.execute(QUARANTINE_BY_STAGE):
                quarantine.add_metric([stage, str(resolved).lower()], count)
            for source, count, record_count, latest in conn.execute(BATCHES_BY_SOURCE):
                batches.add_metric([source], count)
                records.add_metric([source], record_count)
                last_batch.add_metric([source], float(latest))
            events_estimate = conn.scalar(EVENTS_ESTIMATE)
            last_merge = conn.scalar(LAST_MERGE)
        yield from (staging, quarantine, batches, records, last_batch, held_days, held_rows)
        yield GaugeMetricFamily(
            "etl_events_rows_estimate", "Rows in events (the planner's estimate).", value=events_estimate
        )
        if last_merge is not None:
            yield GaugeMetricFamily(
                "etl_last_merge_timestamp_seconds", "When staging rows were last merged.", value=float(last_merge)
            )


def pipeline_registry(engine: Engine) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineMetrics(engine))
    return registry


def metrics_app(engine: Engine) -> Starlette:
    """``GET /metrics`` in Prometheus' text format (what ``etl metrics`` serves)."""
    registry = pipeline_registry(engine)

    async def scrape(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", scrape)])

"""The pipeline's counters for Prometheus, read from the warehouse at each scrape.

The collector counts what it answers itself (``etl_assets.collector.metrics``); the pipeline's state
lives in the warehouse (what is staged, waiting, quarantined, held back per source, when each source last sent, when events
last changed), so ``etl metrics`` serves it by asking the warehouse's modules on each scrape: cheap aggregate queries and the
planner's row estimate of ``events``, never a scan of a day.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from etl_assets.warehouse.holds import held_by_source
from etl_assets.warehouse.partitions import estimated_event_rows
from etl_assets.warehouse.quarantine import quarantined_by_stage
from etl_assets.warehouse.source_activity import source_activity
from etl_assets.warehouse.staging import last_merged_at, staging_rows_by_status


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
            for source, days, rows in held_by_source(conn):
                held_days.add_metric([source], days)
                held_rows.add_metric([source], rows)
            for status, count in staging_rows_by_status(conn).items():
                staging.add_metric([status], count)
            for stage, resolved, count in quarantined_by_stage(conn):
                quarantine.add_metric([stage, str(resolved).lower()], count)
            for activity in source_activity(conn):
                batches.add_metric([activity.source], activity.batches)
                records.add_metric([activity.source], activity.records)
                last_batch.add_metric([activity.source], activity.last_received_at.timestamp())
            events_estimate = estimated_event_rows(conn)
            last_merge = last_merged_at(conn)
        yield from (staging, quarantine, batches, records, last_batch, held_days, held_rows)
        yield GaugeMetricFamily(
            "etl_events_rows_estimate", "Rows in events (the planner's estimate).", value=events_estimate
        )
        if last_merge is not None:
            yield GaugeMetricFamily(
                "etl_last_merge_timestamp_seconds", "When staging rows were last merged.", value=last_merge.timestamp()
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

"""The collector's Prometheus metrics, in a registry of its own (one per app, so tests can run several)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class CollectorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "etl_collector_requests",
            "Requests answered, by endpoint and status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.accepted_events = Counter(
            "etl_collector_accepted_events",
            "Events accepted (staged or quarantined with a reason), by source.",
            ["source"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "etl_collector_rejected_requests",
            "Requests refused, by reason; nothing of them is stored.",
            ["reason"],
            registry=self.registry,
        )
        self.rows_staged = Counter(
            "etl_collector_rows_staged", "Rows written to staging_events.", registry=self.registry
        )
        self.latency = Histogram(
            "etl_collector_request_seconds",
            "Time from a request's arrival to its answer, by endpoint.",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.flush_requests = Histogram(
            "etl_collector_flush_requests",
            "Requests written together in one flush (group commit).",
            registry=self.registry,
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
        )
        self.pending = Gauge(
            "etl_collector_pending_requests", "Requests waiting for their flush.", registry=self.registry
        )

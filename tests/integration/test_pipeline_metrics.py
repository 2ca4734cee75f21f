"""The pipeline's counters, scraped over real HTTP the way Prometheus would, from a real warehouse."""

from __future__ import annotations

from datetime import date

import requests
from prometheus_client.parser import text_string_to_metric_families

from etl_assets.observability.pipeline_metrics import metrics_app
from etl_assets.warehouse.holds import Verdict, record_verdicts
from tests.asgi_server import serve
from tests.harness import merge_day, stage_payloads


def _samples(url: str) -> dict[tuple[str, tuple], float]:
    body = requests.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def _event(number: int, kind: str = "page_view") -> dict:
    return {"id": f"e{number}", "type": kind, "timestamp": f"2025-03-01T10:00:{number:02d}Z", "user_id": "u"}


def test_a_scrape_reports_staging_quarantine_sources_and_the_last_merge(warehouse_engine):
    stage_payloads(warehouse_engine, "first", [_event(n) for n in range(6)] + [_event(6, "")])
    stage_payloads(warehouse_engine, "second", [_event(n) for n in range(10, 13)])
    with serve(metrics_app(warehouse_engine)) as url:
        before = _samples(url)
        assert before[("etl_staging_rows", (("status", "pending"),))] == 9
        assert before[("etl_staging_rows", (("status", "failed"),))] == 1  # rejected as it was staged
        assert before[("etl_source_batches", (("source", "s3"),))] == 2
        assert before[("etl_source_records", (("source", "s3"),))] == 10
        assert before[("etl_source_last_batch_timestamp_seconds", (("source", "s3"),))] > 0
        assert ("etl_last_merge_timestamp_seconds", ()) not in before

        merge_day(warehouse_engine, date(2025, 3, 1))
        after = _samples(url)
    assert after[("etl_staging_rows", (("status", "succeeded"),))] == 9
    assert after[("etl_staging_rows", (("status", "failed"),))] == 1
    assert after[("etl_quarantine_rows", (("resolved", "false"), ("stage", "normalize")))] == 1
    assert after[("etl_last_merge_timestamp_seconds", ())] > 0


def test_a_scrape_reports_what_the_staging_gate_holds_back_per_source(warehouse_engine):
    stage_payloads(warehouse_engine, "app", [_event(n) for n in range(4)], source="segment:app")
    record_verdicts(warehouse_engine, date(2025, 3, 1), [Verdict("segment:app", 4, "valid_values: 2 of 4 rows")])
    with serve(metrics_app(warehouse_engine)) as url:
        samples = _samples(url)
    assert samples[("etl_source_held_days", (("source", "segment:app"),))] == 1
    assert samples[("etl_source_held_rows", (("source", "segment:app"),))] == 4
    assert samples[("etl_source_batches", (("source", "segment:app"),))] == 1

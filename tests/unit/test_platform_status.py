"""The pure parts of `etl status`: when a source counts as quiet, and how the report reads."""

from datetime import UTC, date, datetime, timedelta

from etl_assets.observability.platform_status import (
    AssetState,
    PlatformStatus,
    ServiceState,
    SourceState,
    WarehouseState,
    problems_line,
    render_status,
)
from etl_assets.quality.reconciliation import BatchReconciliation
from etl_assets.warehouse.holds import Hold
from etl_assets.warehouse.identity import IdentitySummary
from etl_assets.warehouse.quarantine import QuarantineSummary
from etl_assets.warehouse.source_activity import freshness_state
from etl_assets.warehouse.staging import WaitingDay

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_source_turns_warn_then_fail_as_its_silence_grows():
    warn, fail = timedelta(minutes=30), timedelta(minutes=120)
    assert [freshness_state(timedelta(minutes=m), warn, fail) for m in (5, 30, 31, 120, 121)] == [
        "ok",
        "ok",
        "WARN",
        "WARN",
        "FAIL",
    ]


def _status(collector_up: bool) -> PlatformStatus:
    pending = [WaitingDay(date(2026, 2, day), rows) for day, rows in ((25, 10), (26, 5), (27, 1), (28, 4))]
    return PlatformStatus(
        checked_at=NOW,
        services=[
            ServiceState("warehouse", "postgresql://postgres@127.0.0.1:5433/warehouse", True, "schema revision 0005"),
            ServiceState(
                "collector",
                "http://127.0.0.1:9200",
                collector_up,
                "/healthz ok" if collector_up else "no answer",
                "start `uv run etl dev`",
            ),
        ],
        warehouse=WarehouseState(
            "0005",
            pending,
            QuarantineSummary(7, 2, [("normalize", "unknown event type", 6), ("parse", "broken JSON", 1)], [], []),
            [SourceState("api:demo", NOW - timedelta(minutes=45), 12, "WARN")],
            [
                BatchReconciliation("landing/a.jsonl#e1", "s3", 3, 2, 1, 120),
                BatchReconciliation("landing/b.jsonl.gz#e2", "s3", 0, 0, 0, 80),
            ],
            IdentitySummary(users=1200, linked=3400, refused=2),
        ),
        assets=[
            AssetState(
                "events",
                "warehouse",
                "0f2ed751-aaaa",
                "SUCCESS",
                NOW - timedelta(minutes=3),
                NOW - timedelta(hours=3),
                "2026-02-28",
                "HEALTHY",
            ),
            AssetState("quarantine", "quality", None, None, None, None, None, None),
        ],
        freshness_minutes=(30, 120),
    )


def test_the_report_says_what_waits_what_is_quarantined_and_when_each_thing_last_ran():
    assert render_status(_status(collector_up=True)) == [
        "services",
        "  warehouse  up    postgresql://postgres@127.0.0.1:5433/warehouse  schema revision 0005",
        "  collector  up    http://127.0.0.1:9200  /healthz ok",
        "staging     20 rows waiting to merge over 4 days (2026-02-25 … 2026-02-28)",
        "quarantine  7 unresolved rows (2 resolved by re-drives); most: unknown event type (6); broken JSON (1)",
        "batches     2 in the last 7 days, 1 NOT accounted for; first landing/b.jsonl.gz#e2: 80 bytes and no record, "
        "no quarantine row saying why",
        "identity    1,200 users, 3,400 ids linked to them, 2 links refused (they would merge two known users: see "
        "identity_links)",
        "sources     last batch per source (7 days; warn after 30 min, fail after 120 min silent)",
        "  api:demo             WARN  last batch 2026-03-01 11:15 UTC (45 min ago), 12 batches",
        "assets      last run, last materialization, freshness",
        "  events      SUCCESS 2026-03-01 11:57 UTC (3 min ago) run 0f2ed751; materialized 2026-03-01 09:00 UTC (3 h ago)"
        " partition 2026-02-28; freshness HEALTHY",
        "  quarantine  never run; never materialized",
    ]


def test_what_is_down_is_one_line_with_what_to_do():
    status = _status(collector_up=False)
    assert render_status(status)[2] == "  collector  DOWN  http://127.0.0.1:9200  no answer"
    assert problems_line(status) == ("collector is down at http://127.0.0.1:9200 (no answer): start `uv run etl dev`")


def test_each_source_is_listed_on_its_own_and_a_held_one_says_why_and_how_to_release_it():
    status = _status(collector_up=True)
    hold = Hold(
        date(2026, 2, 28), "segment:app", "valid_values: 60 of 120 rows (50.0%)", 4, NOW - timedelta(hours=2), NOW
    )
    sources = [
        SourceState("segment:app", NOW - timedelta(minutes=1), 30, "ok"),
        SourceState("segment:shop", NOW - timedelta(minutes=1), 40, "ok"),
    ]
    status.warehouse.sources[:] = sources
    status.warehouse.held.append(hold)
    lines = render_status(status)
    first = lines.index(next(line for line in lines if line.startswith("  segment:app")))
    assert lines[first : first + 5] == [
        "  segment:app          ok    last batch 2026-03-01 11:59 UTC (60 s ago), 30 batches; HELD BACK on 2026-02-28",
        "  segment:shop         ok    last batch 2026-03-01 11:59 UTC (60 s ago), 40 batches",
        "held back   1 source-day(s) the staging gate keeps from merging (their rows wait; fix the cause, then "
        "re-drive the day with redrive_quarantine_job)",
        "  segment:app on 2026-02-28 (4 rows waiting): valid_values: 60 of 120 rows (50.0%) (held since 2026-03-01 "
        "10:00 UTC (2 h ago))",
        "assets      last run, last materialization, freshness",
    ]

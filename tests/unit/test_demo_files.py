"""The demo landing files: deterministic, realistic, and their stats say exactly what a reader finds."""

from __future__ import annotations

import csv
import filecmp
import gzip
import io
import re
import time
import tracemalloc
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest

from etl_assets.demo.landing_files import (
    BAD_KINDS,
    CSV_COLUMNS,
    DemoFile,
    demo_landing_set,
    generate_events,
    write_landing_file,
    write_large_file,
)
from etl_assets.transform.vocabulary import EVENT_TYPES

START = date(2025, 8, 1)
EXPECTED_CSV_HEADER = (
    b"id,type,timestamp,user_id,anonymous_id,session_id,product_id,quantity,price,currency,order_id,page_url,referrer\n"
)
PRODUCT_EVENT_TYPES = {"product_view", "add_to_cart", "remove_from_cart", "purchase"}
SESSION_GAP = timedelta(minutes=30)


def _instant(value: str | int) -> datetime:
    if isinstance(value, int):
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
    return datetime.fromisoformat(value).astimezone(UTC)


def _canonical_timestamp(value: str | int) -> str:
    return _instant(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event_from_csv(row: dict[str, str]) -> dict[str, Any]:
    event: dict[str, Any] = {"id": row["id"], "type": row["type"], "timestamp": row["timestamp"]}
    if row["user_id"]:
        event["user"] = {"id": row["user_id"]}
    if row["anonymous_id"]:
        event["anonymous_id"] = row["anonymous_id"]
    event["session"] = {"id": row["session_id"]}
    if row["product_id"]:
        product: dict[str, Any] = {"id": row["product_id"], "price": row["price"], "currency": row["currency"]}
        if row["quantity"]:
            product["quantity"] = int(row["quantity"])
        event["product"] = product
    if row["order_id"]:
        event["order"] = {"id": row["order_id"]}
    event["page"] = (
        {"url": row["page_url"], "referrer": row["referrer"]} if row["referrer"] else {"url": row["page_url"]}
    )
    return event


def _read_file(name: str, data: bytes) -> tuple[list[dict[str, Any]], Counter[str], int]:
    """Reads a landing file the plain way: (valid records as canonical events, bad records by reason, blank lines)."""
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    lines = data.split(b"\n")
    assert lines[-1] == b"", "a file ends with a newline"
    lines = lines[:-1]
    is_csv = ".csv" in name
    if is_csv:
        assert lines[0] == EXPECTED_CSV_HEADER[:-1]
        lines = lines[1:]
    valid: list[dict[str, Any]] = []
    bad: Counter[str] = Counter()
    blank = 0
    for line in lines:
        if not line:
            blank += 1
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            bad["invalid_utf8"] += 1
            continue
        if "\x00" in text:
            bad["nul_byte"] += 1
            continue
        if is_csv:
            cells = next(csv.reader([text]))
            if len(cells) != len(CSV_COLUMNS):
                bad["wrong_column_count"] += 1
                continue
            record = dict(zip(CSV_COLUMNS, cells, strict=True))
        else:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad["truncated_json"] += 1
                continue
        if not record.get("id"):
            bad["missing_id"] += 1
        elif not record.get("type"):
            bad["missing_type"] += 1
        elif is_csv:
            valid.append(_event_from_csv(record))
        else:
            valid.append({**record, "timestamp": _canonical_timestamp(record["timestamp"])})
    return valid, bad, blank


def _day(event: dict[str, Any]) -> date:
    return _instant(event["timestamp"]).date()


@pytest.fixture(scope="module")
def demo_set() -> list[DemoFile]:
    return demo_landing_set(seed=11, start=START, days=4, events_per_file=300, files=8)


def test_a_seed_gives_identical_bytes_and_another_seed_different_bytes():
    first = demo_landing_set(seed=5, start=START, days=2, events_per_file=120, files=4)
    again = demo_landing_set(seed=5, start=START, days=2, events_per_file=120, files=4)
    other = demo_landing_set(seed=6, start=START, days=2, events_per_file=120, files=4)

    assert [(f.name, f.data) for f in first] == [(f.name, f.data) for f in again]
    assert [f.name for f in first] == [f.name for f in other]
    assert all(mine.data != theirs.data for mine, theirs in zip(first, other, strict=True))


def test_large_files_are_reproducible_gzip_without_time_or_name(tmp_path: Path):
    paths = [tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"]
    for path in paths:
        write_large_file(path, events=3000, seed=9, fmt="jsonl", gzip=True)
    first, second = (path.read_bytes() for path in paths)

    assert first == second
    assert first[:2] == b"\x1f\x8b"
    assert first[3] == 0, "no FNAME or other optional header fields"
    assert first[4:8] == b"\x00\x00\x00\x00", "mtime 0"
    assert len(gzip.decompress(first).splitlines()) == 3000


def test_set_names_rotate_formats_by_file_day(demo_set: list[DemoFile]):
    assert [f.name.split("/")[1] for f in demo_set[:3]] == ["events-000.jsonl", "events-001.csv", "events-002.jsonl.gz"]
    for demo_file in demo_set:
        assert demo_file.name.split("/")[0] == demo_file.stats.main_day.isoformat()
    assert [f.stats.main_day for f in demo_set] == sorted(f.stats.main_day for f in demo_set)
    assert {f.stats.main_day for f in demo_set} == {START + timedelta(days=n) for n in range(4)}
    assert gzip.decompress(demo_set[2].data).startswith(b'{"id":"evt_')


def test_stats_match_a_plain_reading_of_the_bytes(demo_set: list[DemoFile]):
    seen: set[str] = set()
    for demo_file in demo_set:
        valid, bad, _ = _read_file(demo_file.name, demo_file.data)
        stats = demo_file.stats
        duplicates = sum(1 for event in valid if event["id"] in seen)
        seen.update(event["id"] for event in valid)

        assert stats.name == demo_file.name
        assert (stats.valid, stats.bad, stats.records) == (len(valid), bad.total(), len(valid) + bad.total())
        assert stats.bad_kinds == bad
        assert stats.duplicates == duplicates
        assert stats.days == {_day(event) for event in valid}
        assert stats.late == sum(1 for event in valid if _day(event) < stats.main_day)
        assert valid == stats.valid_events, "each valid record carries its canonical event, in file order"
    assert sum(f.stats.bad for f in demo_set) >= len(demo_set), "at least one bad record per file"


def test_set_shares_of_bad_duplicate_and_late_records(demo_set: list[DemoFile]):
    records = sum(f.stats.records for f in demo_set)
    bad_kinds = sum((f.stats.bad_kinds for f in demo_set), Counter())

    assert 0.005 <= bad_kinds.total() / records <= 0.02
    assert set(bad_kinds) == set(BAD_KINDS["jsonl"]) | set(BAD_KINDS["csv"]), "kinds rotate across the whole set"
    assert 0.01 <= sum(f.stats.duplicates for f in demo_set) / records <= 0.03
    assert all(f.stats.duplicates > 0 for f in demo_set[1:])
    assert demo_set[0].stats.duplicates == 0
    assert sum(f.stats.late for f in demo_set) >= 3


def test_duplicates_repeat_an_earlier_event_unchanged(demo_set: list[DemoFile]):
    first_seen: dict[str, tuple[int, dict[str, Any]]] = {}
    repeats = 0
    for index, demo_file in enumerate(demo_set):
        valid, _, _ = _read_file(demo_file.name, demo_file.data)
        for event in valid:
            if event["id"] in first_seen:
                earlier_index, earlier_event = first_seen[event["id"]]
                assert earlier_index < index, "duplicates are re-sent in a later file"
                assert event == earlier_event
                repeats += 1
            else:
                first_seen[event["id"]] = (index, event)

    assert repeats == sum(f.stats.duplicates for f in demo_set) > 0
    valid_by_id = {event["id"]: event for demo_file in demo_set for event in demo_file.stats.valid_events}
    assert valid_by_id == {event_id: event for event_id, (_, event) in first_seen.items()}


def test_late_events_are_from_one_to_three_days_before_the_file_day(demo_set: list[DemoFile]):
    late_lags = []
    for demo_file in demo_set:
        valid, _, _ = _read_file(demo_file.name, demo_file.data)
        file_day = date.fromisoformat(demo_file.name.split("/")[0])
        late_lags += [(file_day - _day(event)).days for event in valid if _day(event) < file_day]

    assert len(late_lags) == sum(f.stats.late for f in demo_set) > 0
    assert set(late_lags) <= {1, 2, 3}


def test_a_one_day_set_has_no_late_events():
    demo_set = demo_landing_set(seed=2, start=START, days=1, events_per_file=100, files=3)

    assert all(f.stats.late == 0 and f.stats.days == {START} for f in demo_set)
    assert sum(f.stats.duplicates for f in demo_set) > 0


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_every_bad_kind_is_written_and_rejected_by_a_plain_reader(fmt: str):
    events = list(generate_events(seed=4, start=START, days=1, events=500))
    out = io.BytesIO()

    stats = write_landing_file(out, events, fmt, gzip=False, bad_share=0.1, seed=4, name=f"bad.{fmt}")
    valid, bad, blank = _read_file(f"bad.{fmt}", out.getvalue())

    assert stats.bad_kinds == bad
    assert set(bad) == set(BAD_KINDS[fmt])
    assert max(bad.values()) - min(bad.values()) <= 1, "kinds rotate"
    assert stats.bad == 50 and stats.valid == 500 and stats.records == 550
    assert blank == 1, "one blank line, not counted as a record"
    assert valid == events, "bad records come in addition to the events, which are all still there"


def test_csv_header_is_exact_and_cells_are_empty_when_missing():
    events = list(generate_events(seed=1, start=START, days=1, events=400))
    out = io.BytesIO()
    write_landing_file(out, events, "csv", gzip=False)
    lines = out.getvalue().split(b"\n")

    assert lines[0] + b"\n" == EXPECTED_CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert len(rows) == 400
    assert all(bool(row["user_id"]) != bool(row["anonymous_id"]) for row in rows)
    assert all(row["order_id"] == "" for row in rows if row["type"] != "purchase")
    assert all(row["product_id"] == row["price"] == row["quantity"] == "" for row in rows if row["type"] == "page_view")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["timestamp"]) for row in rows)


def test_jsonl_mixes_timestamp_forms_for_the_same_instant():
    events = list(generate_events(seed=3, start=START, days=1, events=3000))
    out = io.BytesIO()
    write_landing_file(out, events, "jsonl", gzip=False, seed=3)
    records = [orjson.loads(line) for line in out.getvalue().splitlines()]

    forms = Counter("epoch_ms" if isinstance(r["timestamp"], int) else r["timestamp"][19:] or "naive" for r in records)
    assert set(forms) == {"Z", "+02:00", "epoch_ms"}
    assert forms["Z"] > 0.8 * len(records)
    assert forms["+02:00"] > 0.05 * len(records) and forms["epoch_ms"] > 0.02 * len(records)
    assert [_canonical_timestamp(r["timestamp"]) for r in records] == [e["timestamp"] for e in events]


def test_generated_events_are_sessions_of_one_visitor_at_a_time():
    events = list(generate_events(seed=8, start=START, days=2, events=8000))

    assert len(events) == 8000
    assert len({e["id"] for e in events}) == 8000
    assert all(re.fullmatch(r"evt_[0-9a-f]{16}", e["id"]) for e in events)
    times = [_instant(e["timestamp"]) for e in events]
    assert times == sorted(times)
    assert datetime(2025, 8, 1, tzinfo=UTC) <= times[0] and times[-1] < datetime(2025, 8, 3, tzinfo=UTC)

    by_session: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for event, at in zip(events, times, strict=True):
        assert ("user" in event) != ("anonymous_id" in event)
        visitor = event["user"]["id"] if "user" in event else event["anonymous_id"]
        by_session[event["session"]["id"]].append((at, visitor))
    sessions_by_visitor: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for session in by_session.values():
        assert len({visitor for _, visitor in session}) == 1, "a session belongs to one visitor"
        assert all(later - earlier < SESSION_GAP for (earlier, _), (later, _) in pairwise(session))
        sessions_by_visitor[session[0][1]].append((session[0][0], session[-1][0]))
    for spans in sessions_by_visitor.values():
        spans.sort()
        assert all(nxt_start - end >= SESSION_GAP for (_, end), (nxt_start, _) in pairwise(spans))
    assert sum(1 for spans in sessions_by_visitor.values() if len(spans) > 1) > 20, "visitors come back"


def test_event_fields_follow_the_funnel_step():
    events = list(generate_events(seed=12, start=START, days=1, events=5000))

    for event in events:
        product = event.get("product")
        assert (product is not None) == (event["type"] in PRODUCT_EVENT_TYPES)
        assert ("order" in event) == (event["type"] == "purchase")
        assert event["page"]["url"].startswith("https://shop.example/")
        if product is not None:
            assert re.fullmatch(r"p_\d{4}", product["id"])
            assert Decimal(product["price"]).as_tuple().exponent == -2 and Decimal(product["price"]) > 0
            assert product["currency"] in {"EUR", "USD", "GBP"}
            assert ("quantity" in product) == (event["type"] != "product_view")
            assert product.get("quantity", 1) in {1, 2, 3}
    purchases_by_order: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event["type"] == "purchase":
            purchases_by_order[event["order"]["id"]].add(event["session"]["id"])
    assert purchases_by_order and all(len(sessions) == 1 for sessions in purchases_by_order.values())
    prices = defaultdict(set)
    for event in events:
        if "product" in event:
            prices[(event["product"]["id"], event["product"]["currency"])].add(event["product"]["price"])
    assert all(len(seen) == 1 for seen in prices.values()), "one catalogue price per product and currency"
    referrers = Counter(event["page"].get("referrer", "") for event in events)
    assert referrers["https://www.google.com/"] > 0 and referrers[""] > 0


def test_funnel_shape_visitors_and_currencies_are_realistic():
    events = list(generate_events(seed=21, start=START, days=3, events=20_000))
    counts = Counter(e["type"] for e in events)
    types_by_session: dict[str, set[str]] = defaultdict(set)
    for event in events:
        types_by_session[event["session"]["id"]].add(event["type"])
    viewing = [types for types in types_by_session.values() if "product_view" in types]
    carting = [types for types in viewing if "add_to_cart" in types]
    buying = [types for types in carting if "purchase" in types]
    currencies = Counter(e["product"]["currency"] for e in events if "product" in e)
    visitors = {e["user"]["id"] if "user" in e else e["anonymous_id"] for e in events}
    anonymous_sessions = {e["session"]["id"] for e in events if "anonymous_id" in e}

    assert counts["page_view"] > counts["product_view"] > counts["add_to_cart"] > counts["purchase"] > 0
    assert counts["add_to_cart"] > counts["checkout_started"] > 0 and counts["remove_from_cart"] > 0
    assert 0.30 <= len(carting) / len(viewing) <= 0.50
    assert 0.20 <= len(buying) / len(carting) <= 0.40
    assert 0.15 <= len(anonymous_sessions) / len(types_by_session) <= 0.45
    assert (currencies["EUR"] + currencies["USD"]) / currencies.total() > 0.8 and currencies["GBP"] > 0
    assert len(visitors) > 500


def test_timestamps_spread_over_the_days_with_a_diurnal_pattern():
    events = list(generate_events(seed=13, start=START, days=3, events=30_000))
    per_day = Counter(_day(e) for e in events)
    per_hour = Counter(_instant(e["timestamp"]).hour for e in events)

    assert set(per_day) == {START, START + timedelta(days=1), START + timedelta(days=2)}
    assert all(abs(count / len(events) - 1 / 3) < 0.05 for count in per_day.values())
    night = sum(per_hour[hour] for hour in (1, 2, 3, 4))
    evening = sum(per_hour[hour] for hour in (18, 19, 20, 21))
    assert evening > 4 * night > 0


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError):
        generate_events(seed=1, start=START, days=0, events=10)
    with pytest.raises(ValueError):
        write_landing_file(io.BytesIO(), [], "xml", gzip=False)  # type: ignore[arg-type]
    assert list(generate_events(seed=1, start=START, days=1, events=0)) == []


def test_write_large_file_streams_with_flat_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "large.jsonl"
    traced_path = tmp_path / "traced" / "large.jsonl"
    traced_path.parent.mkdir()
    # The traced peak levels off by a few thousand events (the generator's tables are full by then); beyond, five
    # times the events must cost about the same memory, where even 100 bytes kept per event would show.
    small, events = 5_000, 25_000

    started = time.perf_counter()
    stats = write_large_file(path, events=events, seed=1)
    seconds = time.perf_counter() - started
    tracemalloc.start()
    try:
        write_large_file(tmp_path / "small.jsonl", events=small, seed=1)
        _, small_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        traced_stats = write_large_file(traced_path, events=events, seed=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 30 * 1024 * 1024
    assert peak < 1.5 * small_peak, "five times the events, about the same memory"
    assert stats == traced_stats
    assert filecmp.cmp(path, traced_path, shallow=False)
    assert (stats.records, stats.valid, stats.bad, stats.duplicates, stats.late) == (events, events, 0, 0, 0)
    assert stats.days == {START}
    lines = 0
    with path.open("rb") as written:
        for line in written:
            lines += 1
            if lines % 2_000 == 0:
                assert orjson.loads(line)["type"] in EVENT_TYPES
    assert lines == events
    with capsys.disabled():
        print(
            f"\nwrite_large_file jsonl: {events / seconds:,.0f} events/s, "
            f"{path.stat().st_size / seconds / 1e6:.0f} MB/s, traced peak {peak / 1e6:.1f} MB"
        )

"""Listing landing objects for the S3 sensor against a real S3 endpoint: StartAfter, paging, caps, sweeps."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from etl_assets.sources.landing import LandingCursor, RunLimits, plan_landing_tick

PREFIX = "landing/"


@pytest.fixture
def listed_keys(s3):
    """Counts what each ListObjectsV2 call returned, to show what a tick costs."""
    calls: list[int] = []
    s3.meta.events.register("after-call.s3.ListObjectsV2", lambda parsed, **_: calls.append(parsed.get("KeyCount", 0)))
    return calls


def put_many(s3, bucket: str, count: int) -> list[str]:
    keys = [f"{PREFIX}2025-08-01/events-{number:05d}.jsonl" for number in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=key.encode()), keys))
    return keys


def tick(s3, bucket, cursor, *, cap=1200, now=1000.0, sweep=3600.0, known=frozenset(), files_a_run=1):
    """The objects of a tick's runs, in order; ``cap`` runs of ``files_a_run`` files at most."""
    runs, cursor = plan_landing_tick(
        s3,
        bucket,
        PREFIX,
        cursor,
        limits=RunLimits(max_runs=cap, max_files=files_a_run, max_bytes=2**30),
        now=now,
        sweep_every_seconds=sweep,
        unknown_batches=lambda objects: [obj for obj in objects if obj.batch_id not in known],
    )
    return sorted((obj for run in runs for obj in run), key=lambda obj: obj.key), cursor


def test_ticks_page_past_1000_keys_cap_their_runs_and_cost_nothing_once_caught_up(s3, buckets, listed_keys):
    keys = put_many(s3, buckets["landing"], 2500)
    cursor = LandingCursor()
    seen: list[str] = []
    for expected in (1200, 1200, 100):
        objects, cursor = tick(s3, buckets["landing"], cursor)
        assert len(objects) == expected
        seen += [obj.key for obj in objects]
    assert seen == keys
    listed_keys.clear()
    objects, cursor = tick(s3, buckets["landing"], cursor)
    assert objects == []
    assert listed_keys == [0]  # one request, no key returned: a tick costs what is new, not what exists
    s3.put_object(Bucket=buckets["landing"], Key=f"{PREFIX}2025-08-02/events-00000.jsonl", Body=b"{}")
    listed_keys.clear()
    objects, cursor = tick(s3, buckets["landing"], cursor)
    assert [obj.key for obj in objects] == [f"{PREFIX}2025-08-02/events-00000.jsonl"]
    assert listed_keys == [1]


def test_the_same_bytes_are_one_batch_and_new_bytes_another(s3, buckets):
    key = f"{PREFIX}a.jsonl"
    s3.put_object(Bucket=buckets["landing"], Key=key, Body=b'{"id": 1}\n')
    (first,), cursor = tick(s3, buckets["landing"], LandingCursor())
    s3.put_object(Bucket=buckets["landing"], Key=key, Body=b'{"id": 1}\n')
    s3.put_object(Bucket=buckets["landing"], Key=f"{PREFIX}0-early.jsonl", Body=b'{"id": 2}\n')
    objects, cursor = tick(s3, buckets["landing"], cursor, now=1001.0, known={first.batch_id})
    assert objects == []  # the sweep is not due yet
    objects, cursor = tick(s3, buckets["landing"], cursor, now=1000.0 + 3600, known={first.batch_id})
    assert [obj.key for obj in objects] == [f"{PREFIX}0-early.jsonl"]  # same bytes at a.jsonl: same batch
    s3.put_object(Bucket=buckets["landing"], Key=key, Body=b'{"id": 1, "changed": true}\n')
    objects, _ = tick(s3, buckets["landing"], cursor, now=1000.0 + 7200, known={first.batch_id, objects[0].batch_id})
    assert [(obj.key, obj.batch_id != first.batch_id) for obj in objects] == [(key, True)]


def test_a_sweep_over_many_keys_proceeds_a_page_per_tick_within_the_cap(s3, buckets):
    keys = put_many(s3, buckets["landing"], 2100)
    _, cursor = tick(s3, buckets["landing"], LandingCursor(), cap=5000)
    found: list[str] = []
    now = 10_000.0
    for _ in range(6):
        objects, cursor = tick(s3, buckets["landing"], cursor, cap=800, now=now)
        found += [obj.key for obj in objects]
        now += 1
        if not cursor.sweeping:
            break
    assert found == keys  # nothing was known: the sweep proposes each key once, 800 a tick at most
    assert not cursor.sweeping


def test_runs_of_many_files_take_a_tick_up_to_their_count_and_the_cursor_moves_past_exactly_those(s3, buckets):
    keys = put_many(s3, buckets["landing"], 1050)
    limits = RunLimits(max_runs=4, max_files=200, max_bytes=2**30)

    def plan(cursor: LandingCursor):
        return plan_landing_tick(
            s3,
            buckets["landing"],
            PREFIX,
            cursor,
            limits=limits,
            now=1.0,
            sweep_every_seconds=0,
            unknown_batches=lambda objects: objects,
        )

    runs, cursor = plan(LandingCursor())
    assert [len(run) for run in runs] == [200] * 4
    assert [obj.key for run in runs for obj in run] == keys[:800] and cursor.after == keys[799]
    runs, cursor = plan(cursor)
    assert [len(run) for run in runs] == [200, 50] and cursor.after == keys[-1]
    assert [obj.key for run in runs for obj in run] == keys[800:]

"""The S3 sensor's cursor survives a round trip, old plain-key cursors still read, and new files are packed into runs."""

from etl_assets.sources.landing import LandingCursor, LandingObject, RunLimits, group_into_runs, run_key


def test_the_cursor_round_trips_through_json():
    cursor = LandingCursor(after="landing/b.csv", sweep_after="landing/a.csv", sweeping=True, last_sweep=12.5)
    assert LandingCursor.from_json(cursor.to_json()) == cursor


def test_an_empty_or_plain_cursor_reads():
    assert LandingCursor.from_json(None) == LandingCursor()
    assert LandingCursor.from_json("landing/x.jsonl") == LandingCursor(after="landing/x.jsonl")


def test_a_batch_is_named_by_key_and_etag():
    assert LandingObject("landing/a.jsonl", "abc", 3).batch_id == "landing/a.jsonl#abc"
    assert LandingObject("landing/a.jsonl", "abd", 3).batch_id != LandingObject("landing/a.jsonl", "abc", 3).batch_id


def objects(*sizes: int) -> list[LandingObject]:
    return [LandingObject(f"landing/{number:03d}.jsonl", f"e{number}", size) for number, size in enumerate(sizes)]


def test_small_files_fill_runs_up_to_the_file_count_and_the_byte_size():
    limits = RunLimits(max_runs=10, max_files=3, max_bytes=100)
    by_count = group_into_runs(objects(*[1] * 7), limits)
    assert [[obj.key[-9:-6] for obj in run] for run in by_count] == [
        ["000", "001", "002"],
        ["003", "004", "005"],
        ["006"],
    ]
    assert [[obj.size for obj in run] for run in group_into_runs(objects(40, 40, 30, 10), limits)] == [
        [40, 40],
        [30, 10],
    ]


def test_a_file_over_half_the_byte_size_runs_alone_and_the_small_ones_around_it_share_a_run():
    limits = RunLimits(max_runs=10, max_files=3, max_bytes=100)
    runs = group_into_runs(objects(10, 51, 10, 500, 10), limits)
    assert [[obj.size for obj in run] for run in runs] == [[10, 10, 10], [51], [500]]
    assert group_into_runs(objects(50, 50), limits) == [objects(50, 50)]  # half the size is not over half


def test_the_runs_of_a_tick_hold_a_leading_part_of_the_objects():
    limits = RunLimits(max_runs=2, max_files=2, max_bytes=100)
    listed = objects(1, 1, 1, 1, 1, 1)
    runs = group_into_runs(listed, limits)
    assert [obj for run in runs for obj in run] == listed[:4]
    big_first = objects(90, 90, 1)
    assert [[obj.size for obj in run] for run in group_into_runs(big_first, limits)] == [[90], [90]]
    assert group_into_runs([], limits) == []


def test_a_run_key_names_its_objects_whatever_their_order():
    one, two, three = objects(1, 2, 3)
    assert run_key([one]) == one.batch_id
    assert run_key([one, two, three]) == run_key([three, one, two]) != run_key([one, two])
    reuploaded = LandingObject(two.key, "new-etag", 2)
    assert run_key([one, reuploaded, three]) != run_key([one, two, three])
    assert run_key([one, two]).startswith("landing-files:2:")

"""The S3 sensor's cursor survives a round trip and old plain-key cursors still read."""

from etl_assets.sources.landing import LandingCursor, LandingObject


def test_the_cursor_round_trips_through_json():
    cursor = LandingCursor(after="landing/b.csv", sweep_after="landing/a.csv", sweeping=True, last_sweep=12.5)
    assert LandingCursor.from_json(cursor.to_json()) == cursor


def test_an_empty_or_plain_cursor_reads():
    assert LandingCursor.from_json(None) == LandingCursor()
    assert LandingCursor.from_json("landing/x.jsonl") == LandingCursor(after="landing/x.jsonl")


def test_a_batch_is_named_by_key_and_etag():
    assert LandingObject("landing/a.jsonl", "abc", 3).batch_id == "landing/a.jsonl#abc"
    assert LandingObject("landing/a.jsonl", "abd", 3).batch_id != LandingObject("landing/a.jsonl", "abc", 3).batch_id

"""write_figures: the rows, rate, time and errors every write shows on its materialization."""

import time

import dagster as dg

from etl_assets.orchestration.materialization import write_figures


def test_the_rate_is_rows_over_seconds_rounded():
    figures = write_figures(1_000, 0.3, errors=2)
    assert figures["rows per second"] == dg.MetadataValue.float(3333.3)
    assert figures["seconds"] == dg.MetadataValue.float(0.3)
    assert figures["errors"] == dg.MetadataValue.int(2)


def test_zero_seconds_gives_a_rate_of_zero_not_a_division_error():
    figures = write_figures(500, 0.0)
    assert figures["rows per second"] == dg.MetadataValue.float(0.0)
    assert figures["seconds"] == dg.MetadataValue.float(0.0)


def test_succeeded_at_is_now_and_errors_appear_only_when_given():
    before = time.time()
    figures = write_figures(0, 1.5)
    assert before <= figures["succeeded at"].value <= time.time()
    assert "errors" not in figures
    assert list(write_figures(0, 1.5, errors=0)) == ["rows per second", "seconds", "succeeded at", "errors"]

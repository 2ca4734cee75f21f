"""The bench report's arithmetic: ratios to the reference of the same table, and the targets, as pure functions."""

from etl_assets.bench.report import ratio, table_rows, targets
from etl_assets.bench.runner import BenchOptions, BenchResult, PathResult
from etl_assets.bench.sensor import SensorTicks


def path(name: str, rows: int, *seconds: float, peak: float = 0.0) -> PathResult:
    result = PathResult(name=name, rows=rows)
    for sample in seconds:
        result.add(sample, peak)
    return result


def bench(memory: dict[int, float] | None = None, quiet_tick: float = 0.2) -> BenchResult:
    paths = {
        "copy_staging": path("psql \\copy into staging", 1000, 1.0, 2.0, 3.0),  # median 2.0 s: 500 rows/s
        "stage": path("landing file → staging", 1000, 2.5, peak=150),  # 400 rows/s: 0.8
        "copy_events": path("psql \\copy into events", 1000, 1.0),  # 1000 rows/s
        "merge": path("staging → events merge", 1000, 2.0),  # 0.5
        "whole": path("whole file → events", 1000, 4.0),  # 0.25
        "again": path("the same file again", 1000, 1.0),  # a quarter of the whole run
    }
    sensor = SensorTicks(100_000, 1000, quiet_tick, 0.5, 5, 1000, 0.4, 120.0)
    return BenchResult(BenchOptions(), {}, paths, memory or {}, sensor, 10.0)


def test_a_ratio_is_rows_per_second_over_the_reference_of_the_same_table():
    result = bench()
    assert result.paths["copy_staging"].seconds == 2.0  # the median of the repeats
    assert ratio(result, "stage") == 0.8
    assert ratio(result, "merge") == 0.5
    assert ratio(result, "whole") == 0.25
    assert ratio(result, "orm") is None  # not measured


def test_targets_are_met_or_missed_against_their_goals():
    outcomes = {outcome.name: outcome for outcome in targets(bench(memory={1_000_000: 200.0, 5_000_000: 250.0}))}
    assert outcomes["landing → staging"].met is True  # 0.8 ≥ 0.8
    assert outcomes["staging → events merge"].met is False  # 0.5 < 0.6
    assert outcomes["whole file → events"].met is False  # 0.25 < 0.4
    assert outcomes["the same file again"].value == 0.25 and outcomes["the same file again"].met is True
    memory = outcomes["peak memory at 5,000,000 vs 1,000,000 events"]
    assert memory.value == 1.25 and memory.met is False
    assert outcomes["sensor tick, nothing new, 100,000 objects seen"].met is True


def test_a_slow_quiet_tick_misses_and_no_memory_sizes_means_no_memory_target():
    outcomes = {outcome.name: outcome for outcome in targets(bench(quiet_tick=1.5))}
    assert outcomes["sensor tick, nothing new, 100,000 objects seen"].met is False
    assert not any(name.startswith("peak memory") for name in outcomes)


def test_the_table_shows_each_path_with_its_ratio():
    rows = {row[0]: row for row in table_rows(bench())}
    assert rows["landing file → staging"][1:] == ("1,000", "2.50", "400", "0.80", "150")
    assert rows["psql \\copy into events"][4] == "1.00"

"""What a bench run found: each path's rows per second and its ratio to psql ``\\copy`` into the same table, peak
memory, the sensor's ticks, and the targets met or missed; as a table for people and as JSON for tools."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from etl_assets.bench.cpu import CpuSeconds
from etl_assets.bench.runner import BenchResult, PathResult

REFERENCE_OF = {
    "stage": "copy_staging",
    "copy_staging": "copy_staging",
    "merge": "copy_events",
    "whole": "copy_events",
    "enrichment": "copy_events",
    "resent": "copy_events",
    "again": "copy_events",
    "copy_events": "copy_events",
    "orm": "copy_events",
    "core": "copy_events",
    "merge_1": "copy_events",
    "merge_2": "copy_events",
    "merge_4": "copy_events",
    "one_file": "copy_events",
    "small_files": "copy_events",
}
ORDER = (
    "copy_staging",
    "stage",
    "copy_events",
    "merge",
    "whole",
    "again",
    "resent",
    "merge_1",
    "merge_2",
    "merge_4",
    "one_file",
    "small_files",
    "enrichment",
    "orm",
    "core",
)


@dataclass(frozen=True)
class TargetOutcome:
    name: str
    goal: str
    value: float | None
    met: bool | None
    shown: str


def ratio(result: BenchResult, key: str) -> float | None:
    """A path's rows per second over its reference's (both measured in this run)."""
    path = result.paths.get(key)
    reference = result.paths.get(REFERENCE_OF.get(key, ""))
    if path is None or reference is None or not reference.rows_per_second:
        return None
    return path.rows_per_second / reference.rows_per_second


def _at_least(name: str, value: float | None, goal: float) -> TargetOutcome:
    met = None if value is None else value >= goal
    return TargetOutcome(name, f"≥ {goal:g}x \\copy", value, met, "n/a" if value is None else f"{value:.2f}x")


def targets(result: BenchResult) -> list[TargetOutcome]:
    outcomes = [
        _at_least("landing → staging", ratio(result, "stage"), 0.8),
        _at_least("staging → events merge", ratio(result, "merge"), 0.6),
        _at_least("whole file → events", ratio(result, "whole"), 0.4),
    ]
    whole, again = result.paths.get("whole"), result.paths.get("again")
    share = again.seconds / whole.seconds if whole and again and whole.seconds else None
    outcomes.append(
        TargetOutcome(
            "the same file again",
            "≤ 0.5 of the first run's time",
            share,
            None if share is None else share <= 0.5,
            "n/a" if share is None else f"{share:.3f} of the first",
        )
    )
    resent = result.paths.get("resent")
    share = resent.seconds / whole.seconds if whole and resent and whole.seconds else None
    outcomes.append(
        TargetOutcome(
            "the same events re-sent in another file",
            "≤ 0.3 of the first run's time",
            share,
            None if share is None else share <= 0.3,
            "n/a" if share is None else f"{share:.2f} of the first",
        )
    )
    one, many = result.paths.get("one_file"), result.paths.get("small_files")
    if one is not None and many is not None and one.rows_per_second:
        share = many.rows_per_second / one.rows_per_second
        outcomes.append(
            TargetOutcome(
                f"{many.details.get('files', 0):,} small files vs one file, sensor to events",
                "≥ 0.5 of the one file's rows/s",
                share,
                share >= 0.5,
                f"{share:.2f} of the one file ({many.details.get('runs', 0)} runs)",
            )
        )
    if len(result.memory) >= 2:
        smallest, largest = min(result.memory), max(result.memory)
        growth = result.memory[largest] / result.memory[smallest]
        outcomes.append(
            TargetOutcome(
                f"peak memory at {largest:,} vs {smallest:,} events",
                "≤ 1.2x",
                growth,
                growth <= 1.2,
                f"{growth:.2f}x ({result.memory[largest]:.0f} vs {result.memory[smallest]:.0f} MB)",
            )
        )
    if result.sensor is not None:
        tick = result.sensor.nothing_new_seconds
        outcomes.append(
            TargetOutcome(
                f"sensor tick, nothing new, {result.sensor.seen_objects:,} objects seen",
                "< 1 s",
                tick,
                tick < 1.0,
                f"{tick:.3f} s",
            )
        )
    return outcomes


def _path_json(result: BenchResult, key: str, path: PathResult) -> dict[str, Any]:
    share = ratio(result, key)
    return {
        "name": path.name,
        "rows": path.rows,
        "seconds": round(path.seconds, 3),
        "samples": [round(sample, 3) for sample in path.samples],
        "rows_per_second": round(path.rows_per_second, 1),
        "reference": REFERENCE_OF.get(key),
        "ratio_to_reference": None if share is None else round(share, 3),
        "peak_rss_mb": round(path.peak_rss_mb, 1),
        "details": path.details,
    }


def as_json(result: BenchResult) -> dict[str, Any]:
    ordered = [key for key in ORDER if key in result.paths] + [key for key in result.paths if key not in ORDER]
    return {
        "machine": result.machine,
        "options": {**asdict(result.options), "work_dir": None, "database_url": None},
        "paths": {key: _path_json(result, key, result.paths[key]) for key in ordered},
        "peak_rss_mb_by_events": {str(size): round(peak, 1) for size, peak in sorted(result.memory.items())},
        "sensor": None if result.sensor is None else asdict(result.sensor),
        "targets": [asdict(outcome) for outcome in targets(result)],
        "seconds": round(result.seconds, 1),
    }


def concurrency(result: BenchResult) -> str | None:
    """How much faster the same days merge with more day merges at a time than one after another."""
    single = result.paths.get("merge_1")
    if single is None or not single.seconds:
        return None
    shown = [
        f"{key.split('_')[1]} at a time {single.seconds / result.paths[key].seconds:.2f}x"
        for key in ("merge_2", "merge_4")
        if key in result.paths and result.paths[key].seconds
    ]
    return f"day merges at once, speed-up over one at a time: {', '.join(shown)}"


def time_splits(result: BenchResult) -> list[str]:
    """Where each measured path's time went (its last run), so the next bottleneck shows without a
    profiler: parse and transform of staging (COPY overlaps them), and each step of the merge (summed over the days,
    which merge ``at once`` at a time, so the steps can add up to more than the path's seconds)."""
    lines = []
    for key in ("stage", "merge", "whole", "resent"):
        path = result.paths.get(key)
        split = path.details.get("split") if path else None
        if path and split:
            steps = ", ".join(f"{step} {seconds:.2f} s" for step, seconds in split.items())
            at_once = path.details.get("at once")
            days = f", {at_once} days at once" if at_once and at_once > 1 else ""
            lines.append(f"{path.name} ({path.seconds:.2f} s{days}): {steps}")
    return lines


def cpu_floors(result: BenchResult) -> list[str]:
    """The CPU seconds of the paths the targets are about (their last run), and the least wall clock that much
    work could take on this machine's cores: how far overlap alone could take each path."""
    cores = int(result.machine.get("cpus") or 1)
    lines = []
    for key in ("stage", "merge", "whole", "resent"):
        path = result.paths.get(key)
        spent = path.details.get("cpu") if path else None
        if not path or not spent:
            continue
        seconds = CpuSeconds(spent["python"], spent["postgresql"])
        server = "not seen" if seconds.postgresql is None else f"{seconds.postgresql:.2f} s"
        floor = seconds.floor_seconds(cores)
        reference = result.paths.get(REFERENCE_OF[key]) if key != "resent" else None
        best = ""
        if reference and reference.rows and floor:
            best = f" (at best {path.rows / floor / reference.rows_per_second:.2f}x \\copy)"
        lines.append(
            f"{path.name} ({path.seconds:.2f} s): Python {seconds.python:.2f} s, PostgreSQL {server}; "
            f"on {cores} cores no less than {floor:.2f} s{best}"
        )
    return lines


def table_rows(result: BenchResult) -> list[tuple[str, ...]]:
    """The table's rows: path, rows, seconds, rows/s, ratio to its \\copy, peak RSS."""
    rows: list[tuple[str, ...]] = []
    for key in [key for key in ORDER if key in result.paths] + [key for key in result.paths if key not in ORDER]:
        path = result.paths[key]
        share = ratio(result, key)
        rows.append(
            (
                path.name,
                f"{path.rows:,}",
                f"{path.seconds:.2f}",
                f"{path.rows_per_second:,.0f}",
                "—" if share is None else f"{share:.2f}",
                f"{path.peak_rss_mb:.0f}" if path.peak_rss_mb else "—",
            )
        )
    return rows

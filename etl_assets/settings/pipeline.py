"""How data moves through the pipeline: the daily partitions, the S3 sensor's runs, the merge, the sensors' start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from etl_assets.settings.declare import ConfigError, Section, setting
from etl_assets.settings.parsers import count, day, flag, integer, names
from etl_assets.transform.records import DEFAULT_ARRAY_KEYS

whole_number = integer(minimum=1, maximum=10_000, kind="a whole number")


def _top_level_key(name: str, key: str) -> None:
    if "." in key:
        raise ConfigError(f"{name} names {key!r}: list top-level keys without dots, like events,data,records,batch")


@dataclass(frozen=True)
class PipelineSettings(Section):
    first_day: date = setting(
        "ETL_FIRST_DAY",
        day,
        default="2025-01-01",
        help="First day (UTC) of the daily partitions; older events are quarantined with the reason.",
    )
    sensor_max_runs: int = setting(
        "ETL_SENSOR_MAX_RUNS",
        whole_number,
        default="25",
        help="Runs the S3 sensor requests per tick at most; the rest wait for the next.",
    )
    merge_days_at_once: int = setting(
        "ETL_MERGE_DAYS_AT_ONCE",
        integer(minimum=1, maximum=64, kind="a whole number"),
        default="2",
        help="Days one events run merges at the same time, each in a transaction of its own (a backfill's days "
        "spread over the warehouse's cores; runs of other days merge beside it).",
    )
    landing_run_max_files: int = setting(
        "ETL_LANDING_RUN_MAX_FILES",
        whole_number,
        default="200",
        help="Landing files one ingest run takes at most: the S3 sensor puts new files into runs of up to this many "
        "(each file still its own batch).",
    )
    landing_run_max_bytes: int = setting(
        "ETL_LANDING_RUN_MAX_BYTES",
        integer(minimum=1, maximum=2**40, kind="a number of bytes"),
        default=str(64 * 2**20),
        help="Bytes of landing files one ingest run takes at most (64 MiB); a file larger than half of it gets a run "
        "of its own.",
    )
    landing_sweep_minutes: int = setting(
        "ETL_LANDING_SWEEP_MINUTES",
        count,
        default="60",
        help="How often the S3 sensor sweeps the whole prefix for re-uploaded or out-of-order keys (0: never).",
    )
    sensors_running: bool = setting(
        "ETL_SENSORS_RUNNING",
        flag,
        default="false",
        shown_default="unset (false)",
        help="Whether the landing, staged-days and events API sensors run without an operator starting them. "
        "`etl dev` sets it (not with `--paused`); production leaves it unset, so every sensor waits to be started.",
    )
    json_array_keys: tuple[str, ...] = setting(
        "ETL_JSON_ARRAY_KEYS",
        names(_top_level_key),
        default=",".join(DEFAULT_ARRAY_KEYS),
        help="Keys under which a landing file that is one JSON document holds its array of events "
        '(`{"events": [...]}`), in the order they are looked for.',
    )

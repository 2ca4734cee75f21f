"""Putting a demo set of landing files into the landing bucket (``etl dev`` on an empty bucket, ``etl seed``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol

from etl_assets.demo.landing_files import demo_landing_set


@dataclass(frozen=True)
class SeedReport:
    files: int
    records: int
    first_day: date
    last_day: date

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


class SeedProgress(Protocol):
    """Told when the demo set is generated (in memory) and as each of its files is written."""

    def generated(self, files: int, records: int) -> None: ...

    def written(self, name: str, records: int) -> None: ...


def landing_is_empty(client: Any, bucket: str, prefix: str) -> bool:
    return client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0) == 0


def seed_landing(
    client: Any,
    bucket: str,
    prefix: str,
    *,
    last_day: date,
    days: int = 7,
    files: int = 14,
    events_per_file: int = 1500,
    seed: int = 1,
    progress: SeedProgress | None = None,
) -> SeedReport:
    """Write a demo set covering the ``days`` days up to ``last_day`` under ``prefix``; same arguments, same bytes."""
    first_day = last_day - timedelta(days=days - 1)
    demo = demo_landing_set(seed=seed, start=first_day, days=days, events_per_file=events_per_file, files=files)
    if progress is not None:
        progress.generated(len(demo), sum(demo_file.stats.records for demo_file in demo))
    for demo_file in demo:
        client.put_object(Bucket=bucket, Key=f"{prefix}{demo_file.name}", Body=demo_file.data)
        if progress is not None:
            progress.written(demo_file.name, demo_file.stats.records)
    return SeedReport(len(demo), sum(demo_file.stats.records for demo_file in demo), first_day, last_day)

"""Schema drift, as pure functions: the fields a source is known to send against a new profile of it.

A field is a dotted path into a staged payload (``event``, ``properties.sku``). A profile counts, per
source, the rows profiled and, per field, the rows holding it and the JSON types its values had
(``null`` left out). Comparing a profile with what is known of the source tells which fields are new,
which vanished and which took a type they never had.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class FieldProfile:
    rows: int
    """Profiled rows holding the field (its value may be null)."""
    json_types: frozenset[str]


@dataclass(frozen=True)
class SourceProfile:
    source: str
    rows: int
    fields: Mapping[str, FieldProfile] = field(default_factory=dict)


@dataclass(frozen=True)
class KnownField:
    json_types: frozenset[str]
    first_seen_day: date
    last_seen_day: date


@dataclass(frozen=True)
class NewField:
    field: str
    json_types: frozenset[str]
    rows: int


@dataclass(frozen=True)
class VanishedField:
    field: str
    known_types: frozenset[str]
    last_seen_day: date


@dataclass(frozen=True)
class ChangedType:
    field: str
    known_types: frozenset[str]
    new_types: frozenset[str]
    """Types seen now that the field never had before."""
    rows: int


@dataclass(frozen=True)
class FieldChange:
    """One line of a drift report, as a table shows it."""

    source: str
    field: str
    change: str
    types: str
    rows: int | None


@dataclass(frozen=True)
class DriftReport:
    source: str
    day: date
    rows: int
    baseline: bool = False
    """The source had never been profiled: this profile becomes what later days compare against."""
    vanished_checked: bool = False
    """Whether vanished fields were looked for (enough rows, and an earlier profiled day to compare with)."""
    new_fields: tuple[NewField, ...] = ()
    vanished_fields: tuple[VanishedField, ...] = ()
    changed_types: tuple[ChangedType, ...] = ()

    @property
    def has_drift(self) -> bool:
        return bool(self.new_fields or self.vanished_fields or self.changed_types)

    def changes(self) -> Iterator[FieldChange]:
        for new in self.new_fields:
            yield FieldChange(self.source, new.field, "new", format_types(new.json_types), new.rows)
        for vanished in self.vanished_fields:
            yield FieldChange(
                self.source,
                vanished.field,
                f"vanished (last seen {vanished.last_seen_day.isoformat()})",
                format_types(vanished.known_types),
                0,
            )
        for changed in self.changed_types:
            yield FieldChange(
                self.source,
                changed.field,
                "type changed",
                f"{format_types(changed.known_types)} → +{format_types(changed.new_types)}",
                changed.rows,
            )


def format_types(json_types: frozenset[str]) -> str:
    return ", ".join(sorted(json_types)) or "null"


def compare_fields(known: Mapping[str, KnownField], profile: SourceProfile, *, day: date, min_rows: int) -> DriftReport:
    """Compare ``day``'s ``profile`` of a source with the fields known of it.

    Vanished fields are those present on the source's most recent profiled day (the latest
    ``last_seen_day`` among its known fields) that no row of the profile holds. They are looked for
    only when the profile has at least ``min_rows`` rows (a handful of rows may simply not carry an
    optional field) and when that most recent day is before ``day``: re-profiling that day, or a
    backfill of an older one, has no earlier day to compare with.
    """
    if not known:
        return DriftReport(profile.source, day, profile.rows, baseline=True)
    new_fields = tuple(
        NewField(name, seen.json_types, seen.rows) for name, seen in sorted(profile.fields.items()) if name not in known
    )
    changed_types = tuple(
        ChangedType(name, known[name].json_types, seen.json_types - known[name].json_types, seen.rows)
        for name, seen in sorted(profile.fields.items())
        if name in known and seen.json_types - known[name].json_types
    )
    latest_day = max(entry.last_seen_day for entry in known.values())
    vanished_checked = profile.rows >= min_rows and latest_day < day
    vanished_fields = (
        tuple(
            VanishedField(name, entry.json_types, entry.last_seen_day)
            for name, entry in sorted(known.items())
            if entry.last_seen_day == latest_day and name not in profile.fields
        )
        if vanished_checked
        else ()
    )
    return DriftReport(
        profile.source,
        day,
        profile.rows,
        vanished_checked=vanished_checked,
        new_fields=new_fields,
        vanished_fields=vanished_fields,
        changed_types=changed_types,
    )

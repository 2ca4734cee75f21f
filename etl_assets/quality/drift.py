"""Profiling the fields sources send, from the payloads in ``staging_events``, comparing them with what
``source_fields`` remembers, and remembering them there.

The profile is one SQL statement: ``jsonb_each`` walks each payload's top-level keys, and once more the
keys of object values, and the database groups the result, so no staged row passes through Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    CompoundSelect,
    Connection,
    Date,
    Engine,
    Integer,
    Text,
    any_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal,
    null,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert

from etl_assets.settings import QualitySettings
from etl_assets.transform.drift import DriftReport, FieldProfile, KnownField, SourceProfile, compare_fields
from etl_assets.warehouse.schema import source_fields, staging_events

FIELD_NAME_CHARS = 200
"""Longest key a profile names whole; a longer one is cut and ends in "…" (``source_fields`` is keyed by the
field's name, and a btree index entry holds at most 2,704 bytes)."""

SOURCE_FIELDS_LOCK = "etl_assets.source_fields"
"""Name of the advisory lock held while a drift check reads ``source_fields``, compares and records, so
two runs cannot both report the same change (or both record before either compares)."""


def _field_name(key: ColumnElement[str]) -> ColumnElement[str]:
    return case(
        (func.length(key) > FIELD_NAME_CHARS, func.left(key, FIELD_NAME_CHARS - 1, type_=Text).concat("…")), else_=key
    )


def _field_profile_statement() -> CompoundSelect[*tuple[Any, ...]]:
    """Per source: one row with ``field`` NULL holding the rows profiled, then one row per field path with
    the rows holding it and its non-null JSON types. Parameters: ``days`` (dates), ``sample_every`` (k:
    only rows with ``id % k = 0``; 1 profiles every row)."""
    profiled_rows = (
        select(staging_events.c.id, staging_events.c.source, staging_events.c.payload)
        .where(
            staging_events.c.event_day == any_(bindparam("days", type_=ARRAY(Date))),
            staging_events.c.id % bindparam("sample_every", type_=Integer) == 0,
            func.jsonb_typeof(staging_events.c.payload) == "object",
        )
        .cte("profiled_rows")
    )
    top_level = (
        func.jsonb_each(profiled_rows.c.payload)
        .table_valued(column("key", Text), column("value", JSONB), name="top_level")
        .lateral()
    )
    nested = (
        func.jsonb_each(
            case((func.jsonb_typeof(top_level.c.value) == "object", top_level.c.value), else_=func.jsonb_build_object())
        )
        .table_valued(column("key", Text), column("value", JSONB), name="nested")
        .lateral()
    )
    field_values = union_all(
        select(
            profiled_rows.c.source,
            _field_name(top_level.c.key).label("field"),
            func.jsonb_typeof(top_level.c.value).label("json_type"),
        ).select_from(profiled_rows.join(top_level, true())),
        select(
            profiled_rows.c.source,
            (_field_name(top_level.c.key) + literal(".") + _field_name(nested.c.key)).label("field"),
            func.jsonb_typeof(nested.c.value).label("json_type"),
        ).select_from(profiled_rows.join(top_level, true()).join(nested, true())),
    ).subquery("field_values")
    # Counting per type first keeps the aggregate small (a hash of fields and types, not a sort of every value);
    # a row holds a field once, with one type, so the rows holding a field are the sum over its types.
    per_type = (
        select(field_values.c.source, field_values.c.field, field_values.c.json_type, func.count().label("rows"))
        .group_by(field_values.c.source, field_values.c.field, field_values.c.json_type)
        .subquery("per_type")
    )
    per_field = select(
        per_type.c.source,
        per_type.c.field,
        cast(func.sum(per_type.c.rows), BigInteger).label("rows"),
        func.array_agg(aggregate_order_by(per_type.c.json_type, per_type.c.json_type))
        .filter(per_type.c.json_type != "null")
        .label("json_types"),
    ).group_by(per_type.c.source, per_type.c.field)
    per_source = select(
        profiled_rows.c.source,
        null().label("field"),
        func.count().label("rows"),
        cast(null(), ARRAY(Text)).label("json_types"),
    ).group_by(profiled_rows.c.source)
    return union_all(per_source, per_field)


FIELD_PROFILE = _field_profile_statement()


def profile_fields(conn: Connection, days: list[date], sample_every: int = 1) -> dict[str, SourceProfile]:
    """Profile the staged payloads of ``days`` per source (every ``sample_every``-th row by id when > 1)."""
    if not days:
        return {}
    totals: dict[str, int] = {}
    fields: dict[str, dict[str, FieldProfile]] = {}
    for source, field, rows, json_types in conn.execute(
        FIELD_PROFILE, {"days": sorted(days), "sample_every": max(sample_every, 1)}
    ):
        if field is None:
            totals[source] = rows
        else:
            fields.setdefault(source, {})[field] = FieldProfile(rows, frozenset(json_types or ()))
    return {source: SourceProfile(source, rows, fields.get(source, {})) for source, rows in sorted(totals.items())}


def record_profile(conn: Connection, profiles: Mapping[str, SourceProfile], day_of_profile: date) -> int:
    """Upsert the profiled fields into ``source_fields``: types are unioned, the seen days widened."""
    values = [
        {
            "source": source,
            "field": name,
            "json_types": sorted(seen.json_types),
            "first_seen_day": day_of_profile,
            "last_seen_day": day_of_profile,
        }
        for source, profile in sorted(profiles.items())
        for name, seen in sorted(profile.fields.items())
    ]
    if not values:
        return 0
    statement = pg_insert(source_fields)
    excluded = statement.excluded
    known_and_new_types = func.unnest(func.array_cat(source_fields.c.json_types, excluded.json_types)).column_valued(
        "json_type"
    )
    statement = statement.on_conflict_do_update(
        index_elements=[source_fields.c.source, source_fields.c.field],
        set_={
            "json_types": func.array(
                select(known_and_new_types).distinct().order_by(known_and_new_types).scalar_subquery()
            ),
            "last_seen_at": func.now(),
            "first_seen_day": func.least(source_fields.c.first_seen_day, excluded.first_seen_day),
            "last_seen_day": func.greatest(source_fields.c.last_seen_day, excluded.last_seen_day),
        },
    )
    conn.execute(statement, values)
    return len(values)


def known_fields(conn: Connection, sources: Iterable[str]) -> dict[str, dict[str, KnownField]]:
    sources = sorted(set(sources))
    known: dict[str, dict[str, KnownField]] = {source: {} for source in sources}
    if not sources:
        return known
    rows = conn.execute(
        select(
            source_fields.c.source,
            source_fields.c.field,
            source_fields.c.json_types,
            source_fields.c.first_seen_day,
            source_fields.c.last_seen_day,
        ).where(source_fields.c.source.in_(sources))
    )
    for source, field, json_types, first_seen_day, last_seen_day in rows:
        known[source][field] = KnownField(frozenset(json_types), first_seen_day, last_seen_day)
    return known


def lock_source_fields(conn: Connection) -> None:
    """Wait for any other compare-and-record on ``source_fields``; released when the transaction ends."""
    conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(SOURCE_FIELDS_LOCK))))


def staged_rows_per_day(conn: Connection, days: list[date]) -> dict[date, int]:
    if not days:
        return {}
    rows = conn.execute(
        select(staging_events.c.event_day, func.count())
        .where(staging_events.c.event_day.in_(days))
        .group_by(staging_events.c.event_day)
    )
    return {day: count for day, count in rows}


def days_ingested_within(conn: Connection, period: timedelta) -> list[date]:
    """Event days of the staging rows ingested during the last ``period``."""
    return list(
        conn.scalars(
            select(staging_events.c.event_day)
            .where(
                staging_events.c.ingested_at >= func.now() - period,
                staging_events.c.event_day.is_not(None),
            )
            .distinct()
            .order_by(staging_events.c.event_day)
        )
    )


def sampling_step(day_rows: int, sample_rows: int) -> int:
    """Profile every k-th row (by id) of a day larger than ``sample_rows``: an even sample of about that size."""
    return math.ceil(day_rows / sample_rows) if day_rows > sample_rows else 1


def profile_and_compare_day(engine: Engine, day: date, quality: QualitySettings) -> tuple[list[DriftReport], int]:
    """Drift reports of ``day``, one per source that staged rows for it, and the sampling step used.

    The day is profiled outside any transaction; comparing it with ``source_fields`` and recording it happen in
    one transaction under ``SOURCE_FIELDS_LOCK``."""
    with engine.connect() as conn:
        step = sampling_step(staged_rows_per_day(conn, [day]).get(day, 0), quality.sample_rows)
        profiles = profile_fields(conn, [day], step)
    if not profiles:
        return [], step
    with engine.begin() as conn:
        lock_source_fields(conn)
        known = known_fields(conn, profiles)
        reports = [
            compare_fields(known[source], profile, day=day, min_rows=quality.drift_min_rows)
            for source, profile in sorted(profiles.items())
        ]
        record_profile(conn, profiles, day)
    return reports, step

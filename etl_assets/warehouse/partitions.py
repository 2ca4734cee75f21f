"""Day partitions of ``events``: named ``events_pYYYYMMDD``, created on demand before a merge.

There is no DEFAULT partition on purpose: a row for a day without a partition fails loudly instead
of landing in a catch-all that would later block creating that day's partition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from sqlalchemy import Connection, text

from etl_assets.warehouse.schema import events

CREATE_EVENTS_PARTITION = text("SELECT etl_create_events_partition(:day)")
"""Through a SECURITY DEFINER function (migration 0004): only the table's owner may add partitions to it,
and the transform role that merges is not the owner."""

EVENT_PARTITIONS = text(
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :parent ORDER BY c.relname"
)
ESTIMATED_EVENT_ROWS = text(
    "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    f"JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = '{events.name}'"
)
"""The planner's row estimate of ``events``, summed over its partitions: no scan."""

PARTITION_NAME = re.compile(rf"^{events.name}_p\d{{8}}$")


def event_partition_name(day: date) -> str:
    return f"{events.name}_p{day:%Y%m%d}"


def ensure_event_partitions(conn: Connection, days: Iterable[date]) -> list[str]:
    """Create the partitions of ``events`` for ``days`` that do not exist yet; return the names created."""
    existing = set(list_event_partitions(conn))
    created = []
    for day in sorted(set(days)):
        name = event_partition_name(day)
        if name in existing:
            continue
        conn.execute(CREATE_EVENTS_PARTITION, {"day": day})
        created.append(name)
    return created


def list_event_partitions(conn: Connection) -> list[str]:
    return list(conn.scalars(EVENT_PARTITIONS, {"parent": events.name}))


def estimated_event_rows(conn: Connection) -> float:
    return float(conn.scalar(ESTIMATED_EVENT_ROWS) or 0)


def is_partition_table(name: str) -> bool:
    return bool(PARTITION_NAME.match(name))

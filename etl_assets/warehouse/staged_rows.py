"""How a transformed record becomes the normalized columns of its ``staging_events`` row (COPY values).

Each column's reader is resolved once, not per row: this runs for every record that enters.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from etl_assets.transform import exact_json
from etl_assets.transform.staged import Transformed
from etl_assets.warehouse.schema import STAGED_EVENT_COLUMNS

TRANSFORMED_COLUMNS = (*STAGED_EVENT_COLUMNS, "lines", "linked_ids", "group_id", "traits", "rejection", "rejected_rule")
"""The staging columns the transform fills, in the order ``transformed_values`` gives them."""

UNTRANSFORMED = (None,) * len(TRANSFORMED_COLUMNS)
"""The values of a record staged without the transform."""


def _json_text(value: Any) -> str | None:
    return None if value is None else exact_json.dumps(value).decode()


def _tags(tags: tuple[str, ...]) -> list[str] | str:
    return list(tags) if tags else "{}"  # the empty array's text: psycopg's list dumper costs 2 µs a row


def _event_value(name: str) -> Callable[[Any], Any]:
    if name == "properties":
        return lambda event: _json_text(event.properties)
    if name == "quality_tags":
        return lambda event: _tags(event.quality_tags)
    if name == "occurred_at":
        return lambda event: event.occurred_at.isoformat()  # as text: half the cost of psycopg's datetime dumper
    return attrgetter(name)


_EVENT_VALUES = tuple(_event_value(name) for name in STAGED_EVENT_COLUMNS)
_NO_EVENT = (None,) * len(STAGED_EVENT_COLUMNS)


def transformed_values(result: Transformed) -> tuple[Any, ...]:
    """``result`` as values of ``TRANSFORMED_COLUMNS``."""
    event = result.event
    if event is None:
        return (*_NO_EVENT, None, None, None, None, result.rejection, result.rejected_rule)
    facts = result.identity
    return (
        *(value(event) for value in _EVENT_VALUES),
        _json_text([line.as_json() for line in result.lines]) if result.lines else None,
        list(facts.linked_ids) or None,
        facts.group_id,
        _json_text(facts.traits),
        None,
        None,
    )

"""What an event says about who sent it: the ids it ties to a user id, and an identify's or group's traits.

The identity graph in the warehouse (``warehouse/identity.py``) is fed from these facts:

- an event that carries both an anonymous id and a user id ties the anonymous id to the user id;
- an ``alias`` call ties its ``previousId`` (and its anonymous id, when it has one) to its ``userId``;
- an ``identify`` call does the same as any event, and its ``traits`` become the user's latest traits;
- a ``group`` call names a ``groupId`` and the group's ``traits``.

Traits are read from the payload after PII pseudonymization, so ``users`` holds them as ``events`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etl_assets.transform.normalize import NormalizedEvent, RecordRejected, id_text
from etl_assets.transform.vocabulary import IDENTITY_CALL_TYPES

_PREVIOUS_ID_KEYS = ("previousId", "previous_id")
_GROUP_ID_KEYS = ("groupId", "group_id")


@dataclass(frozen=True, slots=True)
class IdentityFacts:
    linked_ids: tuple[str, ...]
    """Ids (anonymous ids, an alias's previous id) that this event ties to its user id."""
    group_id: str | None
    traits: dict[str, Any] | None
    """The traits of an ``identify`` (the user's) or a ``group`` call (the group's); ``None`` for other events."""


NO_FACTS = IdentityFacts((), None, None)


def identity_facts(event: NormalizedEvent) -> IdentityFacts:
    """The identity facts of a normalized event; ``RecordRejected`` when an alias's or group's id is unfit."""
    if event.event_type not in IDENTITY_CALL_TYPES and (event.user_id is None or event.anonymous_id is None):
        return NO_FACTS  # most events: nothing ties one id to another
    properties = event.properties or {}
    linked: list[str] = []
    if event.event_type == "alias":
        previous = id_text(_first(properties, _PREVIOUS_ID_KEYS), "previousId")
        if previous is not None:
            linked.append(previous)
    if event.anonymous_id is not None:
        linked.append(event.anonymous_id)
    linked_ids = () if event.user_id is None else tuple(dict.fromkeys(i for i in linked if i != event.user_id))
    group_id = None
    traits = None
    if event.event_type == "group":
        group_id = id_text(_first(properties, _GROUP_ID_KEYS), "groupId")
        traits = _traits(properties)
    elif event.event_type == "identify":
        traits = _traits(properties)
    if not linked_ids and group_id is None and traits is None:
        return NO_FACTS
    return IdentityFacts(linked_ids, group_id, traits)


def _first(properties: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = properties.get(key)
        if value is not None:
            return value
    return None


def _traits(properties: Mapping[str, Any]) -> dict[str, Any]:
    """``traits`` of the call, else those under ``context.traits`` (where some SDKs put them); ``{}`` if none."""
    traits = properties.get("traits")
    if traits is None:
        context = properties.get("context")
        traits = context.get("traits") if isinstance(context, Mapping) else None
    if traits is None:
        return {}
    if not isinstance(traits, Mapping):
        raise RecordRejected(f"traits must be an object, not {type(traits).__name__}")
    return dict(traits)

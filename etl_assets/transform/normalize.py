"""One normalized event shape from nested JSON, flat CSV/JSON and Segment-style records.

Every input shape of the same event gives the same ``NormalizedEvent``, including its ``content_hash``. A record
that cannot become an event raises ``RecordRejected`` (and nothing else) with the reason kept in quarantine.
"""

from __future__ import annotations

import hashlib
import math
import reprlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, fields, make_dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Literal, cast

from etl_assets.transform import exact_json
from etl_assets.transform.days import day_start
from etl_assets.transform.vocabulary import ORDER_AMOUNT_TYPES, PAGE_CALLS, PURCHASE, comparable, event_type_of

_ABSENT: Any = object()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FOUR_PLACES = Decimal("0.0001")
_ZERO_PRICE = Decimal("0.0000")
_PRICE_LIMIT = Decimal(10) ** 14  # the events.price column (and every amount) is NUMERIC(18, 4)
_QUANTITY_LIMIT = 2**31 - 1  # the events.quantity column is INTEGER
_REASON_VALUE_CHARS = 60
_ID_MAX_BYTES = 1024  # ids are indexed (events, event_ledger, the daily tables): a btree entry holds 2,704 bytes
_EXACT_FLOAT_LIMIT = 2**53  # from here on a float no longer holds every integer: its digits may not be those sent
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_NUMERIC_CHARS = frozenset("0123456789.")
_INT_TEXT_DIGITS = 20  # longer digit strings go through Decimal: int() refuses more than 4300 digits

TAG_TIMESTAMP_ASSUMED_UTC = "timestamp_assumed_utc"
TAG_TIMESTAMP_EPOCH = "timestamp_epoch"
TAG_CURRENCY_MISSING = "currency_missing"
TAG_PURCHASE_WITHOUT_PRICE = "purchase_without_price"


# What the columns took from a record: ``True`` for a key taken whole, a nested map for keys taken inside it.
_Consumed = dict[str, "_Consumed | Literal[True]"]


# One way a field can be given: its first key, its second (or ``None``), the keys below that, and whether the path
# is also a container.
_Entry = tuple[str, str | None, tuple[str, ...], bool]


class _Aliases:
    """The dotted paths one field can be given under, in order of precedence."""

    __slots__ = ("entries", "first_keys", "first_keys_in_order", "paths")

    def __init__(self, *dotted: str) -> None:
        self.paths = tuple(tuple(alias.split(".")) for alias in dotted)
        self.first_keys = frozenset(path[0] for path in self.paths)
        self.first_keys_in_order = tuple(dict.fromkeys(path[0] for path in self.paths))
        self.entries: tuple[_Entry, ...] = ()  # set once every field's paths are known (_CONTAINER_PATHS)


_EVENT_ID = _Aliases("id", "event_id", "eventId", "messageId")
_EVENT_TYPE = _Aliases("type", "event_type", "eventType", "event")
_TIMESTAMP = _Aliases("timestamp", "occurred_at", "ts", "time", "event_time", "originalTimestamp")
_USER_ID = _Aliases("user_id", "userId", "user.id", "user")
_ANONYMOUS_ID = _Aliases("anonymous_id", "anonymousId")
_SESSION_ID = _Aliases("session_id", "sessionId", "session.id", "session")
_PRODUCT_ID = _Aliases("product_id", "productId", "sku", "product.id", "properties.product_id", "properties.sku")
_PRICE = _Aliases("price", "product.price", "properties.price")
_CURRENCY = _Aliases("currency", "product.currency", "properties.currency")
_QUANTITY = _Aliases("quantity", "qty", "product.quantity", "properties.quantity")
_ORDER_ID = _Aliases("order_id", "orderId", "order.id", "properties.order_id")
_PAGE_URL = _Aliases("page_url", "url", "page.url", "context.page.url", "properties.url")
_REFERRER = _Aliases("referrer", "page.referrer", "context.page.referrer", "properties.referrer")
_PAGE_NAME = _Aliases("name", "properties.name")
_PAGE_CATEGORY = _Aliases("category", "properties.category")
_REVENUE = _Aliases("revenue", "properties.revenue")
_TOTAL = _Aliases("total", "properties.total")
_SHIPPING = _Aliases("shipping", "properties.shipping")
_TAX = _Aliases("tax", "properties.tax")
_DISCOUNT = _Aliases("discount", "properties.discount")
_COUPON = _Aliases("coupon", "properties.coupon")

IDENTITY_KEYS = _EVENT_ID.first_keys | _EVENT_TYPE.first_keys | _TIMESTAMP.first_keys
"""Top-level keys an event's id, type and timestamp are read from: what staging keys a record by."""

# A path that is both an alias and the container of another alias (``user`` and ``user.id``) names the
# field only when it holds a plain value; an object there is left to the nested alias.
_CONTAINER_PATHS = frozenset(
    path[:depth]
    for group in (
        _USER_ID,
        _SESSION_ID,
        _PRODUCT_ID,
        _PRICE,
        _CURRENCY,
        _QUANTITY,
        _ORDER_ID,
        _PAGE_URL,
        _REFERRER,
        _PAGE_NAME,
        _PAGE_CATEGORY,
        _REVENUE,
        _TOTAL,
        _SHIPPING,
        _TAX,
        _DISCOUNT,
        _COUPON,
    )
    for path in group.paths
    for depth in range(1, len(path))
)

_Containers = dict[str, "_Containers"]


def _container_tree(paths: frozenset[tuple[str, ...]]) -> _Containers:
    tree: _Containers = {}
    for path in paths:
        node = tree
        for key in path:
            node = node.setdefault(key, {})
    return tree


# The same paths as a tree (``{"context": {"page": {}}, ...}``), for walking a record.
_CONTAINERS = _container_tree(_CONTAINER_PATHS)
_NO_CONTAINERS: _Containers = {}

_FIELDS = (
    _EVENT_ID,
    _TIMESTAMP,
    _USER_ID,
    _ANONYMOUS_ID,
    _SESSION_ID,
    _PRODUCT_ID,
    _ORDER_ID,
    _PAGE_URL,
    _REFERRER,
    _PRICE,
    _CURRENCY,
    _QUANTITY,
)
"""The fields every record is read for, in the order ``normalize`` reads them."""
_PAGE_FIELDS = (_PAGE_NAME, _PAGE_CATEGORY)
"""Read for a page or screen call only."""
_ORDER_FIELDS = (_REVENUE, _TOTAL, _SHIPPING, _TAX, _DISCOUNT, _COUPON)
"""Read for a type of ``ORDER_AMOUNT_TYPES`` only (on another event they stay in properties)."""
_DEEP_KEYS = frozenset(
    path[depth]
    for group in (*_FIELDS, *_PAGE_FIELDS, *_ORDER_FIELDS)
    for path in group.paths
    for depth in range(len(path) - 2)
)
"""Keys that aliases go two or more keys below (``context`` of ``context.page.url``): only under these can a key's
mark in ``_Consumed`` name keys consumed inside them; under any other key, each key a mark names was consumed whole."""

for _aliases in (_EVENT_TYPE, *_FIELDS, *_PAGE_FIELDS, *_ORDER_FIELDS):
    _aliases.entries = tuple(
        (path[0], path[1] if len(path) > 1 else None, path[2:], path in _CONTAINER_PATHS) for path in _aliases.paths
    )

# Segment's call type: the event name of a ``track`` call is in ``event``.
_SEGMENT_TRACK = "track"
_NAME_MAX_BYTES = 1024  # event names are indexed, as ids are


RULE_ACCEPTED_EVENT_TYPE = "accepted_event_type"
RULE_PRICE_NOT_NEGATIVE = "price_not_negative"
RULE_TIME_IN_RANGE = "occurred_at_in_range"
RULE_IDENTITY_PRESENT = "identity_present"
RULE_VALID_VALUES = "valid_values"


class RecordRejected(ValueError):
    """A record that cannot become an event; str(error) is the reason stored in quarantine.

    ``rule`` names the data rule the record breaks, so quality checks can count rejections by rule.
    """

    def __init__(self, reason: str, rule: str = RULE_VALID_VALUES) -> None:
        super().__init__(reason)
        self.rule = rule


@dataclass(frozen=True, slots=True)
class AcceptedTimes:
    earliest: datetime
    latest: datetime

    @classmethod
    def through_today(cls, first_day: date, now: datetime) -> AcceptedTimes:
        """From the start of ``first_day`` through the end of ``now``'s UTC day: the days a partition exists for."""
        today = now.astimezone(UTC).date()
        return cls(day_start(first_day), day_start(today + timedelta(days=1)))


@dataclass(frozen=True, slots=True)
class EventKey:
    event_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class NormalizedEvent:
    event_id: str
    occurred_at: datetime
    event_type: str
    event_name: str
    """The name as sent: a ``track`` call's event, a page or screen call's name, a landing file's type."""
    user_id: str | None
    anonymous_id: str | None
    session_id: str | None
    product_id: str | None
    quantity: int | None
    price: Decimal | None
    currency: str | None
    order_id: str | None
    page_url: str | None
    referrer: str | None
    page_category: str | None
    revenue: Decimal | None
    total: Decimal | None
    shipping: Decimal | None
    tax: Decimal | None
    discount: Decimal | None
    coupon: str | None
    properties: dict[str, Any] | None
    quality_tags: tuple[str, ...]
    content_hash: str


_MutableEvent = make_dataclass(
    "_MutableEvent", [(field.name, field.type) for field in fields(NormalizedEvent)], slots=True
)
"""``NormalizedEvent``'s slots, not frozen: its ``__init__`` stores each field directly."""


def _event(*values: Any) -> NormalizedEvent:
    """``NormalizedEvent(*values)``, in a seventh of the time.

    A frozen dataclass's ``__init__`` sets each of its 24 fields through ``object.__setattr__`` (2 µs an event).
    The mutable twin has the same slots in the same order, so the filled instance can take the frozen class:
    what comes out is a ``NormalizedEvent`` like any other (equal, frozen, same ``repr``).
    """
    event = _MutableEvent(*values)
    event.__class__ = NormalizedEvent
    return cast(NormalizedEvent, event)


def event_key(payload: Mapping[str, Any], accepted: AcceptedTimes) -> EventKey:
    """The event's identity, as ``normalize`` would give it, without normalizing the rest."""
    record = _as_dict(payload)
    id_value, time_value = _pick(record, _plan_of(record).key_fields, {})
    event_id = _event_id(id_value)
    occurred_at, _ = _occurred_at(time_value, accepted)
    return EventKey(event_id, occurred_at)


def event_id_of(payload: Mapping[str, Any]) -> str | None:
    """The event's id as ``normalize`` would give it, or ``None`` when it has none it could use (cheaper than
    ``event_key``: no timestamp is read)."""
    try:
        record = _as_dict(payload)
        id_value = _pick(record, _plan_of(record).key_fields, {})[0]
        return _event_id(id_value)
    except RecordRejected:
        return None


def normalize(payload: Mapping[str, Any], accepted: AcceptedTimes) -> NormalizedEvent:
    record = _as_dict(payload)
    plan = _plan_of(record)
    consumed: _Consumed = {}
    (
        id_value,
        time_value,
        user_value,
        anonymous_value,
        session_value,
        product_value,
        order_value,
        url_value,
        referrer_value,
        price_value,
        currency_value,
        quantity_value,
    ) = _pick(record, plan.fields, consumed)

    event_id = _event_id(id_value)
    event_name, event_type, page_call = _event_name(record, plan.name_keys, consumed)
    page_category = None
    if page_call is not None:
        name_value, category_value = _pick(record, plan.page_fields, consumed)
        event_name = _name_text(name_value, "page name") or page_call
        page_category = _text(category_value, "page category")
    occurred_at, time_tag = _occurred_at(time_value, accepted)

    user_id = _id_text(user_value, "user_id")
    anonymous_id = _id_text(anonymous_value, "anonymous_id")
    if user_id is None and anonymous_id is None:
        raise RecordRejected("no user_id or anonymous_id", rule=RULE_IDENTITY_PRESENT)
    session_id = _id_text(session_value, "session_id")
    product_id = _id_text(product_value, "product_id")
    order_id = _id_text(order_value, "order_id")
    page_url = _text(url_value, "page_url")
    referrer = _text(referrer_value, "referrer")
    price = _price(price_value)
    currency = _currency(currency_value)
    quantity = _quantity(quantity_value)
    revenue = total = shipping = tax = discount = coupon = None
    if event_type in ORDER_AMOUNT_TYPES:
        revenue_value, total_value, shipping_value, tax_value, discount_value, coupon_value = _pick(
            record, plan.order_fields, consumed
        )
        revenue = _amount(revenue_value, "revenue")
        total = _amount(total_value, "total")
        shipping = _amount(shipping_value, "shipping")
        tax = _amount(tax_value, "tax")
        discount = _amount(discount_value, "discount")
        coupon = _text(coupon_value, "coupon")

    properties = _properties(_without(record, consumed, _CONTAINERS)) or None
    tags = [time_tag] if time_tag is not None else []
    if event_type == PURCHASE:
        priced = price is not None or revenue is not None or total is not None or _has_products(properties)
        if not priced:
            tags.append(TAG_PURCHASE_WITHOUT_PRICE)
        elif currency is None:
            tags.append(TAG_CURRENCY_MISSING)
    quality_tags = tuple(sorted(tags))
    hashed = (
        event_id,
        occurred_at,
        event_type,
        event_name,
        user_id,
        anonymous_id,
        session_id,
        product_id,
        quantity,
        None if price is None else str(price),
        currency,
        order_id,
        page_url,
        referrer,
        page_category,
        None if revenue is None else str(revenue),
        None if total is None else str(total),
        None if shipping is None else str(shipping),
        None if tax is None else str(tax),
        None if discount is None else str(discount),
        coupon,
        properties,
        quality_tags,
    )
    return _event(
        event_id,
        occurred_at,
        event_type,
        event_name,
        user_id,
        anonymous_id,
        session_id,
        product_id,
        quantity,
        price,
        currency,
        order_id,
        page_url,
        referrer,
        page_category,
        revenue,
        total,
        shipping,
        tax,
        discount,
        coupon,
        properties,
        quality_tags,
        hashlib.md5(_canonical_json(hashed), usedforsecurity=False).hexdigest(),
    )


@dataclass(frozen=True, slots=True)
class _Fields:
    """Where a record gives some fields: ``(position, aliases)`` of each field with an alias whose first key the
    record has (aliases in order of precedence), out of ``count`` fields."""

    count: int
    held: tuple[tuple[int, tuple[_Entry, ...]], ...]

    @classmethod
    def of(cls, groups: tuple[_Aliases, ...], keys: set[Any]) -> _Fields:
        held = (
            (slot, tuple(entry for entry in group.entries if entry[0] in keys)) for slot, group in enumerate(groups)
        )
        return cls(len(groups), tuple((slot, entries) for slot, entries in held if entries))


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which aliases a record with a given set of top-level keys has, per field: resolved once per set of keys,
    so that a record is read for the aliases it holds rather than for every alias of every field."""

    fields: _Fields
    """Of ``_FIELDS``, in their order."""
    key_fields: _Fields
    """The event id and the timestamp (the first two of ``_FIELDS``)."""
    page_fields: _Fields
    order_fields: _Fields
    name_keys: tuple[str, ...]
    """The keys an event's name can be under that the record has, in order of precedence."""


_PLANS_KEPT = 1024
"""Sets of top-level keys whose plan is kept: a source sends a few shapes; a hostile mix only costs a new plan."""
_PLANNED_KEYS = 64
"""Records with more top-level keys get a plan of their own, not kept (the cache holds their keys)."""


def _plan_of(record: dict[str, Any]) -> _Plan:
    keys = tuple(record)
    return _kept_plan(keys) if len(keys) <= _PLANNED_KEYS else _plan(keys)


def _plan(keys: tuple[Any, ...]) -> _Plan:
    present = set(keys)
    names = tuple(key for key in _EVENT_TYPE.first_keys_in_order if key in present)
    return _Plan(
        _Fields.of(_FIELDS, present),
        _Fields.of(_FIELDS[:2], present),
        _Fields.of(_PAGE_FIELDS, present),
        _Fields.of(_ORDER_FIELDS, present),
        names,
    )


_kept_plan = lru_cache(maxsize=_PLANS_KEPT)(_plan)


def _as_dict(payload: Any) -> dict[str, Any]:
    if isinstance(payload, dict):
        return payload
    if isinstance(payload, Mapping):
        return dict(payload)
    raise RecordRejected(f"record is {type(payload).__name__}, not a JSON object")


def _bounded_repr() -> reprlib.Repr:
    """``repr`` bounded in depth and length, so showing a hostile value (nested 1,000 deep, 10 MB long) is cheap."""
    bounded = reprlib.Repr()
    bounded.maxlevel = 3
    bounded.maxstring = bounded.maxlong = bounded.maxother = _REASON_VALUE_CHARS
    return bounded


_BOUNDED_REPR = _bounded_repr()


def _value_in_reason(value: Any) -> str:
    """``value`` as a rejection reason quotes it: a bounded ``repr``, clipped to ``_REASON_VALUE_CHARS``."""
    return _clipped(_BOUNDED_REPR.repr(value))


def _clipped(text: str) -> str:
    return text if len(text) <= _REASON_VALUE_CHARS else text[: _REASON_VALUE_CHARS - 3] + "..."


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and (not value or value.isspace()))


def _pick(record: dict[str, Any], fields: _Fields, consumed: _Consumed) -> list[Any]:
    """Per field, the value of its first alias present and not empty (``None`` if none is), marked as ``consumed``.

    ``fields`` holds the aliases each field has in ``record`` (its ``_Plan``). A later alias that lost stays in
    properties, unless it is empty (``_without`` drops every empty value).
    """
    values = [None] * fields.count
    for slot, entries in fields.held:
        for first, second, deeper, container in entries:
            value = record[first]
            if second is not None:
                if not isinstance(value, dict):
                    continue
                value = value.get(second)
                for key in deeper:
                    value = value.get(key) if isinstance(value, dict) else None
                    if value is None:
                        break
            if value is None:
                continue
            if isinstance(value, str):
                if not value or value.isspace():
                    continue
            elif container and isinstance(value, dict):
                continue
            if second is None:
                consumed[first] = True
            elif deeper:
                _consume(consumed, first, (second, *deeper))
            elif (node := consumed.get(first)) is None:
                consumed[first] = {second: True}
            elif node is not True:
                node[second] = True
            values[slot] = value
            break
    return values


def _consume(consumed: _Consumed, first: str, rest: tuple[str, ...]) -> None:
    if not rest:
        consumed[first] = True
        return
    node = consumed.setdefault(first, {})
    for key in rest[:-1]:
        if node is True:
            return
        node = node.setdefault(key, {})
    if node is not True:
        node[rest[-1]] = True


def _text(value: Any, field: str) -> str | None:
    """Canonical text of a scalar: numbers as their decimal text, stripped, Unicode NFC; empty is ``None``."""
    if value is None:
        return None
    if type(value) is str or isinstance(value, str):
        text = value.strip()
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise RecordRejected(f"{field} {_value_in_reason(value)} is not a string or a number")
        whole = value.to_integral_value()
        text = format(whole if value == whole else value, "f")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordRejected(f"{field} {_value_in_reason(value)} is not a string or a number")
    elif isinstance(value, int):
        text = str(value)
    elif not math.isfinite(value):
        raise RecordRejected(f"{field} {_value_in_reason(value)} is not a string or a number")
    elif not value.is_integer():
        text = repr(value)
    elif abs(value) < _EXACT_FLOAT_LIMIT:
        text = str(int(value))
    else:
        raise RecordRejected(
            f"{field} {_value_in_reason(value)} is a number too large to be exact: send it as a string"
        )
    if not text:
        return None
    if "\x00" in text:
        raise RecordRejected(f"{field}: NUL character (PostgreSQL text cannot hold it)")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text


def id_text(value: Any, field: str) -> str | None:
    """An id's canonical text, as the id columns hold it (``None`` when empty); ``RecordRejected`` when unfit."""
    return _id_text(value, field)


def _id_text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if type(value) is str and value.isascii() and "\x00" not in value:
        # What ``_text`` makes of it, for the common case: nothing to normalize or refuse.
        text: str | None = value.strip()
        if not text:
            return None
    else:
        text = _text(value, field)
        if text is None:
            return None
    if len(text) > _ID_MAX_BYTES // 4 and (size := len(text.encode("utf-8", "surrogatepass"))) > _ID_MAX_BYTES:
        raise RecordRejected(f"{field} is {size:,} bytes long; an id may have at most {_ID_MAX_BYTES:,}")
    if len(text) == 36 and _looks_like_uuid(text):
        return text.lower()
    return text


def _looks_like_uuid(text: str) -> bool:
    dashes_in_place = text[8] == text[13] == text[18] == text[23] == "-" and text.count("-") == 4
    return dashes_in_place and _HEX_DIGITS.issuperset(text.replace("-", ""))


def _event_id(value: Any) -> str:
    if isinstance(value, Decimal) and value.is_finite() and _is_whole_past_a_double(value):
        # ``exact_json`` keeps the digits of a whole number past 64 bits; any other JSON reader (the sender's own
        # tools, a replay through another path) takes it for a double, another number: the id must come as a string.
        raise RecordRejected(
            f"event id {_value_in_reason(float(value))} is a number too large to be exact: send it as a string"
        )
    event_id = _id_text(value, "event id")
    if event_id is None:
        raise RecordRejected("no event id")
    return event_id


def _is_whole_past_a_double(value: Decimal) -> bool:
    return value == value.to_integral_value() and abs(value) >= _EXACT_FLOAT_LIMIT


def _event_name(record: dict[str, Any], keys: tuple[str, ...], consumed: _Consumed) -> tuple[str, str, str | None]:
    """The event's name as sent, its type, and the Segment page call (``page``, ``screen``) it is, if it is one.

    ``keys``: the keys of ``_EVENT_TYPE`` that ``record`` has, in order. Any name is accepted (the vocabulary maps
    it onto a type, ``custom`` at worst; Segment's identify, group and alias calls onto types of their own); only a
    record without a name, or a name that is not text, is rejected.
    """
    chosen: Any = None
    for key in keys:
        value = record[key]
        if isinstance(value, str) and comparable(value) == _SEGMENT_TRACK:
            consumed[key] = True
        elif chosen is None and not _is_empty(value):
            consumed[key] = True
            chosen = value
    if chosen is None:
        raise RecordRejected("no event type", rule=RULE_ACCEPTED_EVENT_TYPE)
    if not isinstance(chosen, str):
        raise RecordRejected(
            f"event type {_value_in_reason(chosen)} is not a name (text)", rule=RULE_ACCEPTED_EVENT_TYPE
        )
    return _known_name(chosen) if len(chosen) <= _CACHED_CHARS else _name_of(chosen)


def _name_of(chosen: str) -> tuple[str, str, str | None]:
    call = comparable(chosen)
    name = _name_text(chosen, "event type")
    assert name is not None  # not empty: checked by the caller
    return name, event_type_of(name), (call if call in PAGE_CALLS else None)


_CACHED_CHARS = 64
"""Values up to this long are looked up in the caches below (names, prices: a stream repeats a few of them)."""
_CACHE_SIZE = 4096

_known_name = lru_cache(maxsize=_CACHE_SIZE)(_name_of)


def _name_text(value: Any, field: str) -> str | None:
    text = _text(value, field)
    if text is not None and len(text) > _NAME_MAX_BYTES // 4:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > _NAME_MAX_BYTES:
            raise RecordRejected(f"{field} is {size:,} bytes long; a name may have at most {_NAME_MAX_BYTES:,}")
    return text


def _has_products(properties: dict[str, Any] | None) -> bool:
    products = properties.get("products") if properties else None
    return isinstance(products, list) and bool(products)


def _occurred_at(value: Any, accepted: AcceptedTimes) -> tuple[datetime, str | None]:
    """The timestamp in UTC and the quality tag its form earned (or ``None``), checked against ``accepted``."""
    if value is None:
        raise RecordRejected("no timestamp")
    tag: str | None = None
    try:
        if isinstance(value, str):
            occurred_at, tag = _parse_time_text(value)
        elif isinstance(value, datetime):
            occurred_at = value
        elif isinstance(value, bool):
            raise RecordRejected(f"unparseable timestamp {_value_in_reason(value)}")
        elif isinstance(value, int):
            occurred_at, tag = _from_epoch(value), TAG_TIMESTAMP_EPOCH
        elif isinstance(value, float | Decimal):
            occurred_at, tag = _from_epoch(_finite_decimal(value, "timestamp")), TAG_TIMESTAMP_EPOCH
        else:
            raise RecordRejected(f"unparseable timestamp {_value_in_reason(value)}")
        if occurred_at.tzinfo is None:
            occurred_at = occurred_at.replace(tzinfo=UTC)
            tag = tag or TAG_TIMESTAMP_ASSUMED_UTC
        elif occurred_at.tzinfo is not UTC:
            occurred_at = occurred_at.astimezone(UTC)
    except OverflowError as error:
        raise RecordRejected(
            f"timestamp {_value_in_reason(value)} is outside {_accepted_range(accepted)}", rule=RULE_TIME_IN_RANGE
        ) from error
    if not accepted.earliest <= occurred_at < accepted.latest:
        raise RecordRejected(
            f"timestamp {occurred_at.isoformat()} is outside {_accepted_range(accepted)}", rule=RULE_TIME_IN_RANGE
        )
    return occurred_at, tag


def _accepted_range(accepted: AcceptedTimes) -> str:
    return f"the accepted range {_bound(accepted.earliest)} .. {_bound(accepted.latest)}"


def _bound(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    at_midnight = not (moment.hour or moment.minute or moment.second or moment.microsecond)
    return moment.date().isoformat() if at_midnight else moment.isoformat()


def _parse_time_text(value: str) -> tuple[datetime, str | None]:
    text = value.strip()
    if text[4:5] == "-":  # an ISO date (2025-08-01...), not a number: the common case, read first
        try:
            return datetime.fromisoformat(text), None
        except ValueError:
            pass
    else:
        unsigned = text[1:] if text[:1] == "-" else text
        if unsigned and _NUMERIC_CHARS.issuperset(unsigned) and unsigned.count(".") <= 1 and unsigned != ".":
            if "." in unsigned or len(unsigned) > _INT_TEXT_DIGITS:
                return _from_epoch(Decimal(text)), TAG_TIMESTAMP_EPOCH
            return _from_epoch(int(text)), TAG_TIMESTAMP_EPOCH
        try:
            return datetime.fromisoformat(text), None
        except ValueError:
            pass
    upper = text.upper()
    if upper.endswith("Z"):
        zone_free: str | None = text[:-1]
    elif upper.endswith(("UTC", "GMT")):
        zone_free = text[:-3].rstrip()
    else:
        zone_free = None
    if zone_free is not None:
        try:
            parsed = datetime.fromisoformat(zone_free)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC), None
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        number = None
    if number is not None and number.is_finite():
        return _from_epoch(number), TAG_TIMESTAMP_EPOCH
    raise RecordRejected(f"unparseable timestamp {_value_in_reason(value)}")


def _from_epoch(number: int | Decimal) -> datetime:
    """Epoch seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude."""
    magnitude = cast("int | Decimal", abs(number))  # typeshed's abs() of a union is object
    if magnitude < 10**11:
        micros = number * 1_000_000
    elif magnitude < 10**14:
        micros = number * 1_000
    elif magnitude < 10**17:
        micros = number
    elif magnitude < 10**20:
        micros = number / 1_000 if isinstance(number, Decimal) else number // 1_000
    else:
        raise OverflowError("epoch number too large")
    if isinstance(micros, Decimal):
        micros = int(micros.to_integral_value(rounding=ROUND_HALF_UP))
    return _EPOCH + timedelta(microseconds=micros)


def _finite_decimal(value: float | Decimal, field: str) -> Decimal:
    number = Decimal(repr(value)) if isinstance(value, float) else value
    if not number.is_finite():
        raise RecordRejected(f"{field} {_value_in_reason(value)} is not a finite number")
    return number


def _number(value: Any, field: str) -> Decimal:
    """An exact decimal from an int, a float (through its shortest text, never its binary value) or a string."""
    if isinstance(value, bool):
        raise RecordRejected(f"{field} {_value_in_reason(value)} is not a number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float | Decimal):
        return _finite_decimal(value, field)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            number = None
        if number is not None and number.is_finite():
            return number
    raise RecordRejected(f"{field} {_value_in_reason(value)} is not a number")


def _price(value: Any) -> Decimal | None:
    if value is None:
        return None
    if _cacheable(value):
        return _known_price(value)
    return _price_of(value)


def _cacheable(value: Any) -> bool:
    """Whether ``value`` goes through a cache: a short string or a number (typed: ``1`` is not ``1.0`` there).

    Only values whose result depends on their value alone: equal numbers of one type give the same result."""
    kind = type(value)
    return kind is float or kind is int or (kind is str and len(value) <= _CACHED_CHARS)


def _price_of(value: Any) -> Decimal:
    number = _number(value, "price")
    if number < 0:
        raise RecordRejected(f"negative price {_clipped(str(number))}", rule=RULE_PRICE_NOT_NEGATIVE)
    if number >= _PRICE_LIMIT:
        raise RecordRejected(f"price {_clipped(str(number))} is too large (the limit is {_PRICE_LIMIT})")
    price = number.quantize(_FOUR_PLACES, rounding=ROUND_HALF_UP)
    return _ZERO_PRICE if price.is_zero() else price


def _amount(value: Any, field: str) -> Decimal | None:
    """An order's money amount (revenue, total, shipping, tax, discount): any sign, four decimal places."""
    if value is None:
        return None
    if _cacheable(value):
        return _known_amount(value, field)
    return _amount_of(value, field)


def _amount_of(value: Any, field: str) -> Decimal:
    number = _number(value, field)
    if abs(number) >= _PRICE_LIMIT:
        raise RecordRejected(f"{field} {_clipped(str(number))} is too large (the limit is {_PRICE_LIMIT})")
    amount = number.quantize(_FOUR_PLACES, rounding=ROUND_HALF_UP)
    return _ZERO_PRICE if amount.is_zero() else amount


_known_price = lru_cache(maxsize=_CACHE_SIZE, typed=True)(_price_of)
_known_amount = lru_cache(maxsize=_CACHE_SIZE, typed=True)(_amount_of)


def _currency(value: Any) -> str | None:
    if value is None:
        return None
    code = value.strip().upper() if isinstance(value, str) else None
    if code is None or len(code) != 3 or not code.isascii() or not code.isalpha():
        raise RecordRejected(f"currency {_value_in_reason(value)} is not an ISO 4217 code")
    return code


def _quantity(value: Any, field: str = "quantity") -> int | None:
    if value is None:
        return None
    if type(value) is str and value.isdigit() and value.isascii() and len(value) < 10:
        return int(value)
    if type(value) is int and 0 <= value <= _QUANTITY_LIMIT:
        return value
    try:
        number = _number(value, field)
    except RecordRejected:
        raise RecordRejected(f"{field} {_value_in_reason(value)} is not a whole number") from None
    if number != number.to_integral_value():
        raise RecordRejected(f"{field} {_value_in_reason(value)} is not a whole number")
    if number < 0:
        raise RecordRejected(f"negative {field} {_value_in_reason(value)}")
    if number > _QUANTITY_LIMIT:
        raise RecordRejected(f"{field} {_value_in_reason(value)} is too large (the limit is {_QUANTITY_LIMIT})")
    return int(number)


def _without(record: dict[str, Any], consumed: _Consumed, containers: _Containers) -> dict[str, Any]:
    """``record`` less what was consumed and less the empty values of the objects aliases look into.

    Empty values read as missing, as empty CSV fields do; an object left empty is dropped.
    """
    rest: dict[str, Any] = {}
    for key, value in record.items():
        if value is None:
            continue
        if isinstance(value, str):
            if not value or value.isspace() or consumed.get(key) is True:
                continue
        else:
            mark = consumed.get(key)
            if mark is True:
                continue
            if isinstance(value, dict):
                inner_containers = containers.get(key)
                if mark is not None and len(mark) == len(value) and key not in _DEEP_KEYS:
                    continue  # every key of it was consumed whole (the common case of a nested canonical record)
                if mark is not None or inner_containers is not None:
                    value = _without(value, mark or {}, inner_containers or _NO_CONTAINERS)
                    if not value:
                        continue
        rest[key] = value
    return rest


def _properties(rest: dict[str, Any]) -> dict[str, Any]:
    """Flatten the remaining ``properties`` object into the other remaining fields.

    A key of ``properties`` that clashes with a different top-level value stays under ``properties``, so nothing
    is lost.
    """
    inner = rest.get("properties")
    if not isinstance(inner, dict):
        return rest
    del rest["properties"]
    if rest.keys().isdisjoint(inner):
        rest.update(inner)  # no key in both: the common case
        return rest
    clashes: dict[str, Any] = {}
    for key, value in inner.items():
        present = rest.get(key, _ABSENT)
        if present is _ABSENT:
            rest[key] = value
        elif not _same_json(present, value):
            clashes[key] = value
    if clashes:
        rest["properties"] = clashes
    return rest


def _same_json(first: Any, second: Any) -> bool:
    try:
        return type(first) is type(second) and first == second
    except RecursionError:
        return False


def _canonical_json(fields: tuple[Any, ...]) -> bytes:
    try:
        return exact_json.dumps(fields, sort_keys=True)
    except TypeError as error:
        # Integers beyond 64 bits, lone surrogates, non-text keys, nesting deeper than 254: what cannot be hashed
        # here cannot be written to the properties column either.
        raise RecordRejected(f"record cannot be stored as JSON: {error}") from error


# The value rules of the event's own fields, for the other shapes inside a record (an order's products).
parse_text = _text
parse_id = _id_text
parse_price = _price
parse_whole_number = _quantity

"""Realistic demo landing files of e-commerce events, deterministic for a seed.

Used by `etl dev` to seed the local landing bucket (`demo_landing_set`), by the tests (small sets whose
stats say exactly what a loader must find) and by the benchmarks (`write_large_file`, millions of events
streamed to disk with flat memory).

Events follow visitors through sessions and a shop funnel: page_view → product_view → add_to_cart
(sometimes remove_from_cart) → checkout_started → purchase. They are emitted in the platform's nested
canonical shape (see `generate_events`); the files carry them as JSON Lines (same shape, with a mix of
timestamp forms) or as flat CSV (`CSV_COLUMNS`), optionally gzipped, optionally with bad records mixed in.
"""

from __future__ import annotations

import gzip as gzip_module
import heapq
import io
import math
import random
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

import orjson

from etl_assets.transform.days import day_start

Event = dict[str, Any]
FileFormat = Literal["jsonl", "csv"]

SITE = "https://shop.example"
SESSION_GAP_SECONDS = 30 * 60
CSV_COLUMNS = (
    "id",
    "type",
    "timestamp",
    "user_id",
    "anonymous_id",
    "session_id",
    "product_id",
    "quantity",
    "price",
    "currency",
    "order_id",
    "page_url",
    "referrer",
)
CSV_HEADER = (",".join(CSV_COLUMNS) + "\n").encode()
BAD_KINDS: dict[str, tuple[str, ...]] = {
    "jsonl": ("truncated_json", "invalid_utf8", "nul_byte", "missing_id", "missing_type"),
    "csv": ("invalid_utf8", "nul_byte", "wrong_column_count", "missing_id", "missing_type"),
}
DEFAULT_START = date(2025, 8, 1)

DUPLICATE_SHARE = 0.02
LATE_SHARE = 0.01
BAD_SHARE = 0.01

_MASK64 = (1 << 64) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PLUS_TWO = timezone(timedelta(hours=2))
_OFFSET_TIMESTAMP_SHARE = 0.10
_EPOCH_MS_TIMESTAMP_SHARE = 0.05
# Lines go into one bytearray as they are made: holding orjson's bytes objects would cost a memory page each.
_FLUSH_BYTES = 1 << 20
_MAX_THINK_SECONDS = 20 * 60

# Share of the day's traffic per UTC hour: quiet nights, a lunchtime bump and a European/US evening peak.
_HOURLY_WEIGHTS = (
    0.35, 0.25, 0.20, 0.20, 0.25, 0.35, 0.55, 0.80, 1.00, 1.10, 1.15, 1.20,
    1.30, 1.25, 1.20, 1.20, 1.25, 1.35, 1.50, 1.60, 1.55, 1.30, 0.90, 0.55,
)  # fmt: skip
_WEEKDAY_WEIGHTS = (1.00, 0.97, 0.97, 1.00, 1.05, 1.15, 1.12)

_CURRENCY_RATES = {"EUR": Decimal(1), "USD": Decimal("1.09"), "GBP": Decimal("0.86")}
_CATEGORIES: dict[str, tuple[float, tuple[str, ...]]] = {
    "shoes": (89.0, ("sneaker", "running-shoe", "loafer", "ankle-boot", "sandal")),
    "outerwear": (149.0, ("rain-jacket", "parka", "wool-coat", "gilet")),
    "knitwear": (59.0, ("merino-sweater", "cardigan", "beanie", "scarf")),
    "bags": (79.0, ("backpack", "tote-bag", "weekender", "crossbody-bag")),
    "home": (35.0, ("linen-throw", "ceramic-vase", "scented-candle", "cushion-cover")),
    "kitchen": (45.0, ("chef-knife", "espresso-cup-set", "cast-iron-pan", "teapot")),
}
_ADJECTIVES = ("classic", "organic", "recycled", "everyday", "lightweight", "heritage", "urban", "alpine")
_PRICE_ENDINGS = (Decimal("0.99"), Decimal("0.99"), Decimal("0.95"), Decimal("0.50"), Decimal("0.00"))
_CATALOGUE_SIZE = 120
# The shop is the same whatever the seed: product ids and prices stay stable across demo sets.
_CATALOGUE_SEED = 20250801

# (cumulative probability, referrer, query string added to the landing URL)
_EXTERNAL_REFERRERS = (
    (0.38, "https://www.google.com/", ""),
    (0.68, None, ""),
    (0.76, "https://www.facebook.com/", ""),
    (0.82, "https://www.instagram.com/", ""),
    (0.92, None, "?utm_source=newsletter&utm_medium=email"),
    (0.96, "https://www.bing.com/", ""),
    (1.00, "https://blog.partner.example/best-buys", "?utm_source=partner"),
)


def _mix64(value: int) -> int:
    """SplitMix64's finalizer: a bijection on 64-bit integers, so distinct inputs give distinct outputs."""
    value &= _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _format_utc(epoch_seconds: int) -> str:
    return (_EPOCH + timedelta(seconds=epoch_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_timestamp(value: str | int) -> datetime:
    """An instant from any timestamp form the files use: ISO 8601 with `Z` or an offset, or epoch milliseconds."""
    if isinstance(value, int):
        return _EPOCH + timedelta(milliseconds=value)
    return datetime.fromisoformat(value).astimezone(UTC)


def _utc_day_key(value: str | int) -> str:
    if isinstance(value, str) and len(value) == 20 and value.endswith("Z"):
        return value[:10]
    return _parse_timestamp(value).date().isoformat()


def event_day(event: Event) -> date:
    """The UTC day an event happened on."""
    return date.fromisoformat(_utc_day_key(event["timestamp"]))


def _is_valid(event: Event) -> bool:
    """What the normalizer accepts: an id, a type and a timestamp."""
    event_id = event.get("id")
    return isinstance(event_id, str) and bool(event_id) and bool(event.get("type")) and "timestamp" in event


# --- the shop and its visitors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    id: str
    category: str
    url: str
    prices: dict[str, Decimal]


@cache
def catalogue() -> tuple[Product, ...]:
    """The demo shop's products, each priced (2 decimal places) in every currency the shop sells in."""
    rng = random.Random(_CATALOGUE_SEED)
    categories = list(_CATEGORIES)
    products = []
    for index in range(_CATALOGUE_SIZE):
        number = 1001 + index
        category = categories[index % len(categories)]
        base_eur, nouns = _CATEGORIES[category]
        slug = f"{rng.choice(_ADJECTIVES)}-{rng.choice(nouns)}"
        eur = base_eur * rng.lognormvariate(0.0, 0.35)
        ending = rng.choice(_PRICE_ENDINGS)
        prices = {
            currency: Decimal(max(1, int(Decimal(f"{eur:.2f}") * rate))) + ending
            for currency, rate in _CURRENCY_RATES.items()
        }
        products.append(Product(f"p_{number}", category, f"{SITE}/p/{slug}-{number}", prices))
    return tuple(products)


class _Visitors:
    """A pool of visitors: logged-in users and anonymous-only browsers, a tenth of them regulars.

    A visitor's identity and currency follow from its index, so all the pool stores is when each visitor
    may start its next session: never within `SESSION_GAP_SECONDS` of the end of its previous one, so that
    sessions recomputed from event gaps match the session ids.
    """

    ANONYMOUS_SHARE = 35
    REGULAR_SHARE = 0.2

    def __init__(self, count: int, key: int) -> None:
        self.count = count
        self.regulars = max(1, count // 10)
        self.key = key
        self.free_from = array("q", [0]) * count

    def pick(self, rng: random.Random, start: int, end: int) -> int:
        for _ in range(8):
            pool = self.regulars if rng.random() < self.REGULAR_SHARE else self.count
            index = rng.randrange(pool)
            if self.free_from[index] <= start:
                break
        else:
            index = next((i for i in range(self.count) if self.free_from[i] <= start), -1)
            if index < 0:
                raise RuntimeError(f"all {self.count} demo visitors are in a session at second {start}")
        self.free_from[index] = end + SESSION_GAP_SECONDS + 60
        return index

    def identity(self, index: int) -> tuple[str | None, str | None, str]:
        """(user id, anonymous id, currency) of a visitor; exactly one of the ids is set."""
        digest = _mix64(self.key ^ index)
        currency_roll = (digest >> 8) % 100
        currency = "EUR" if currency_roll < 55 else "USD" if currency_roll < 90 else "GBP"
        if index >= self.regulars and digest % 100 < self.ANONYMOUS_SHARE:
            return None, f"anon_{digest:016x}", currency
        return f"u{index + 1}", None, currency


class _Timeline:
    """Maps a fraction of the event stream to a second of the requested UTC days, with a diurnal pattern."""

    def __init__(self, start: date, days: int) -> None:
        self.origin = int(day_start(start).timestamp())
        self.end = days * 86400
        self.weights = [
            hour_weight * _WEEKDAY_WEIGHTS[(start + timedelta(days=day)).weekday()]
            for day in range(days)
            for hour_weight in _HOURLY_WEIGHTS
        ]
        self.cumulative = list(accumulate(self.weights, initial=0.0))

    def second_at(self, fraction: float) -> int:
        target = fraction * self.cumulative[-1]
        hour = min(bisect_right(self.cumulative, target) - 1, len(self.weights) - 1)
        within = (target - self.cumulative[hour]) / self.weights[hour]
        return min(self.end - 1, int((hour + within) * 3600))


# --- sessions -----------------------------------------------------------------------------------------------------


class _Step(NamedTuple):
    offset: int
    type: str
    url: str
    referrer: str | None
    product: int = -1
    quantity: int = 0
    order_id: str | None = None


class _Session:
    __slots__ = ("anonymous_id", "currency", "cursor", "id", "seq", "start", "steps", "user_id")

    def __init__(self, seq: int, session_id: str, start: int, steps: list[_Step]) -> None:
        self.seq = seq
        self.id = session_id
        self.start = start
        self.steps = steps
        self.cursor = 0
        self.user_id: str | None = None
        self.anonymous_id: str | None = None
        self.currency = "EUR"


def _think_seconds(rng: random.Random, typical: float) -> int:
    """Seconds until the visitor's next action: log-normal around `typical`, capped well inside a session gap."""
    return min(_MAX_THINK_SECONDS, max(2, int(typical * math.exp(0.8 * rng.gauss()))))


def _pick_product(rng: random.Random) -> int:
    """Popular products are viewed far more often than the long tail."""
    return int(_CATALOGUE_SIZE * rng.random() ** 1.6)


class _SessionPlanner:
    """Plans one visit through the shop: its events, pages, referrers and funnel steps, offsets in seconds."""

    PRODUCT_BROWSE_SHARE = 0.70
    ADD_TO_CART_SHARE = 0.40
    REMOVE_SHARE = 0.15
    CHECKOUT_SHARE = 0.60
    PURCHASE_SHARE = 0.58

    def __init__(self, rng: random.Random, order_key: int) -> None:
        self.rng = rng
        self.order_key = order_key
        self.orders = 0
        self.products = catalogue()
        self.categories = list(_CATEGORIES)

    def plan(self) -> list[_Step]:
        rng = self.rng
        steps: list[_Step] = []
        clock = 0
        page: tuple[str, str | None] = ("", None)

        def visit(url: str, think: float) -> None:
            nonlocal clock, page
            if steps:
                clock += _think_seconds(rng, think)
            page = (url, page[0] or page[1])
            steps.append(_Step(clock, "page_view", *page))

        def act(event_type: str, think: float, product: int = -1, quantity: int = 0, order: str | None = None) -> None:
            nonlocal clock
            clock += _think_seconds(rng, think) if think else rng.randint(0, 2)
            steps.append(_Step(clock, event_type, *page, product, quantity, order))

        roll = rng.random()
        referrer, query = next((r, q) for limit, r, q in _EXTERNAL_REFERRERS if roll < limit)
        page = ("", referrer)
        viewed: list[int] = []
        landing = rng.random()
        if landing < 0.45:
            visit(f"{SITE}/{query}", 0)
        elif landing < 0.70:
            visit(f"{SITE}/c/{rng.choice(self.categories)}{query}", 0)
        elif landing < 0.80:
            visit(f"{SITE}/sale{query}", 0)
        else:
            viewed.append(_pick_product(rng))
        if viewed or rng.random() < self.PRODUCT_BROWSE_SHARE:
            while len(viewed) < 8 and (not viewed or rng.random() < 0.55):
                viewed.append(_pick_product(rng))
        cart: dict[int, int] = {}
        if viewed and rng.random() < self.ADD_TO_CART_SHARE:
            first = rng.randrange(len(viewed))
            for position, product in enumerate(viewed):
                if position == first or rng.random() < 0.2:
                    cart.setdefault(product, 0)

        for product in viewed:
            if steps and rng.random() < 0.3:
                visit(f"{SITE}/c/{self.products[product].category}", 30)
            if steps:
                visit(self.products[product].url, 40)
            else:
                visit(f"{self.products[product].url}{query}", 0)
            act("product_view", 0, product)
            if product in cart and cart[product] == 0:
                cart[product] = rng.choice((1, 1, 1, 2, 2, 3))
                act("add_to_cart", 35, product, cart[product])
        if not viewed:
            for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
                visit(f"{SITE}/c/{rng.choice(self.categories)}", 35)

        if cart and rng.random() < self.REMOVE_SHARE:
            visit(f"{SITE}/cart", 20)
            product = rng.choice(list(cart))
            act("remove_from_cart", 15, product, cart.pop(product))
        if cart and rng.random() < self.CHECKOUT_SHARE:
            if page[0] != f"{SITE}/cart":
                visit(f"{SITE}/cart", 20)
            page = (f"{SITE}/checkout", page[0])
            act("checkout_started", 25)
            if rng.random() < self.PURCHASE_SHARE:
                self.orders += 1
                order_id = f"o_{_mix64(self.order_key + self.orders):016x}"
                page = (f"{SITE}/checkout/complete", page[0])
                clock += _think_seconds(rng, 150)
                for product, quantity in cart.items():
                    steps.append(_Step(clock, "purchase", *page, product, quantity, order_id))
        return steps


class _EventStream:
    def __init__(self, seed: int, start: date, days: int, events: int) -> None:
        self.rng = random.Random(seed)
        event_key, session_key, order_key, visitor_key = (self.rng.getrandbits(64) for _ in range(4))
        self.event_key = event_key
        self.session_key = session_key
        self.total = events
        self.timeline = _Timeline(start, days)
        self.visitors = _Visitors(max(50, events // 20), visitor_key)
        self.planner = _SessionPlanner(self.rng, order_key)
        self.products = catalogue()
        self.price_texts = [{currency: str(price) for currency, price in p.prices.items()} for p in self.products]
        self.sessions = 0
        self.planned = 0
        self.minute = -1
        self.minute_prefix = ""

    def _next_session(self) -> _Session:
        steps = self.planner.plan()[: self.total - self.planned]
        fraction = (self.planned + self.rng.random() * len(steps)) / self.total
        self.planned += len(steps)
        self.sessions += 1
        start = self.timeline.second_at(fraction)
        session = _Session(self.sessions, f"s_{_mix64(self.session_key + self.sessions):016x}", start, steps)
        visitor = self.visitors.pick(self.rng, start, start + steps[-1].offset)
        session.user_id, session.anonymous_id, session.currency = self.visitors.identity(visitor)
        return session

    def _timestamp(self, second: int) -> str:
        minute, second_of_minute = divmod(self.timeline.origin + second, 60)
        if minute != self.minute:
            self.minute = minute
            self.minute_prefix = _format_utc(minute * 60)[:-3]
        return f"{self.minute_prefix}{second_of_minute:02d}Z"

    def _event(self, number: int, second: int, session: _Session) -> Event:
        step = session.steps[session.cursor]
        event: Event = {
            "id": f"evt_{_mix64(self.event_key + number):016x}",
            "type": step.type,
            "timestamp": self._timestamp(second),
        }
        if session.user_id is not None:
            event["user"] = {"id": session.user_id}
        else:
            event["anonymous_id"] = session.anonymous_id
        event["session"] = {"id": session.id}
        if step.product >= 0:
            currency = session.currency
            product: Event = {
                "id": self.products[step.product].id,
                "price": self.price_texts[step.product][currency],
                "currency": currency,
            }
            if step.quantity:
                product["quantity"] = step.quantity
            event["product"] = product
        if step.order_id is not None:
            event["order"] = {"id": step.order_id}
        event["page"] = {"url": step.url, "referrer": step.referrer} if step.referrer else {"url": step.url}
        return event

    def __iter__(self) -> Iterator[Event]:
        """Merges the sessions' events in time order; only sessions in progress are held in memory."""
        in_progress: list[tuple[int, int, _Session]] = []
        upcoming = self._next_session() if self.total else None
        last_second = self.timeline.end - 1
        for number in range(self.total):
            while upcoming is not None and (not in_progress or upcoming.start <= in_progress[0][0]):
                heapq.heappush(in_progress, (upcoming.start, upcoming.seq, upcoming))
                upcoming = self._next_session() if self.planned < self.total else None
            second, seq, session = heapq.heappop(in_progress)
            yield self._event(number, second, session)
            session.cursor += 1
            if session.cursor < len(session.steps):
                next_second = min(last_second, session.start + session.steps[session.cursor].offset)
                heapq.heappush(in_progress, (next_second, seq, session))


def generate_events(seed: int, start: date, days: int, events: int) -> Iterator[Event]:
    """Exactly `events` canonical nested events over `days` UTC days from `start`, in time order.

    Deterministic for a seed and streaming: memory holds the sessions in progress, not the events.
    Ids are unique within a stream (`evt_` + 16 hex digits of a bijection of the event's number).
    Shape: ``{"id", "type", "timestamp": "…Z", "user": {"id"} | "anonymous_id", "session": {"id"},
    "product": {"id", "price": "19.99", "currency", "quantity"?}?, "order": {"id"}?, "page": {"url", "referrer"?}}``;
    prices are strings of 2-place decimals, as on the wire.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    if events < 0:
        raise ValueError(f"events must not be negative, not {events}")
    return iter(_EventStream(seed, start, days, events))


# --- files --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoFileSpec:
    """A landing file's object key suffix and encoding."""

    name: str
    fmt: FileFormat
    gzip: bool

    @classmethod
    def for_index(cls, index: int, day: date) -> DemoFileSpec:
        """The n-th file of a demo set: formats rotate jsonl, csv, jsonl.gz."""
        rotation: tuple[tuple[FileFormat, bool], ...] = (("jsonl", False), ("csv", False), ("jsonl", True))
        fmt, gzipped = rotation[index % 3]
        suffix = f"{fmt}.gz" if gzipped else fmt
        return cls(f"{day.isoformat()}/events-{index:03d}.{suffix}", fmt, gzipped)


@dataclass
class DemoFileStats:
    """What a loader must find in a file.

    `records` counts the lines that are records (not the CSV header, not blank lines) and equals
    `valid + bad`. `duplicates` counts valid records whose id was written before (tracked only when the
    writer is given `seen_ids`). `late` counts valid events whose UTC day is before `main_day`.
    `valid_events` holds the valid records as canonical events, in file order, for small sets only.
    """

    name: str
    records: int = 0
    valid: int = 0
    bad: int = 0
    duplicates: int = 0
    late: int = 0
    days: set[date] = field(default_factory=set)
    main_day: date | None = None
    bad_kinds: Counter[str] = field(default_factory=Counter)
    valid_events: list[Event] = field(default_factory=list)


class DemoFile(NamedTuple):
    name: str
    data: bytes
    stats: DemoFileStats


def _random_event_id(rng: random.Random) -> str:
    return f"evt_{rng.getrandbits(64):016x}"


def _jsonl_line(event: Event, rng: random.Random) -> bytes:
    """The event as a JSON line; some timestamps as a +02:00 offset or epoch milliseconds (same instant)."""
    roll = rng.random()
    timestamp = event.get("timestamp")
    if roll < _OFFSET_TIMESTAMP_SHARE + _EPOCH_MS_TIMESTAMP_SHARE and isinstance(timestamp, str):
        instant = _parse_timestamp(timestamp)
        if roll < _OFFSET_TIMESTAMP_SHARE:
            event = {**event, "timestamp": instant.astimezone(_PLUS_TWO).isoformat()}
        else:
            event = {**event, "timestamp": (instant - _EPOCH) // timedelta(milliseconds=1)}
    return orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)


def _csv_cell(text: str) -> str:
    if '"' in text or "," in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_line(event: Event) -> bytes:
    user = event.get("user") or {}
    session = event.get("session") or {}
    product = event.get("product") or {}
    order = event.get("order") or {}
    page = event.get("page") or {}
    cells = (
        event.get("id"),
        event.get("type"),
        event.get("timestamp"),
        user.get("id"),
        event.get("anonymous_id"),
        session.get("id"),
        product.get("id"),
        product.get("quantity"),
        product.get("price"),
        product.get("currency"),
        order.get("id"),
        page.get("url"),
        page.get("referrer"),
    )
    texts = ["" if cell is None else str(cell) for cell in cells]
    line = ",".join(texts)
    if line.count(",") != len(cells) - 1 or '"' in line or "\n" in line or "\r" in line:
        line = ",".join(map(_csv_cell, texts))
    return (line + "\n").encode()


def _bad_line(kind: str, event: Event, fmt: FileFormat, rng: random.Random) -> bytes:
    """A bad record modelled on `event`, under a fresh id so that it never shadows a valid record."""
    if kind == "missing_id":
        record = {key: value for key, value in event.items() if key != "id"}
    else:
        record = {**event, "id": _random_event_id(rng)}
        if kind == "missing_type":
            record["type"] = ""
    line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) if fmt == "jsonl" else _csv_line(record)
    body = line[:-1]
    if kind == "truncated_json":
        return body[: len(body) // 2] + b"\n"
    if kind == "wrong_column_count":
        return body + b",unexpected\n"
    if kind in ("invalid_utf8", "nul_byte"):
        scheme_end = body.find(b"://")
        at = scheme_end + 3 if scheme_end >= 0 else len(body) // 2
        junk = b"\xff\xfe" if kind == "invalid_utf8" else b"\x00"
        return body[:at] + junk + body[at:] + b"\n"
    return line


def write_landing_file(
    out: BinaryIO,
    events: Iterable[Event],
    fmt: FileFormat,
    gzip: bool,
    *,
    bad_share: float = 0.0,
    seed: int = 0,
    main_day: date | None = None,
    seen_ids: set[str] | None = None,
    first_bad_kind: int = 0,
    name: str = "",
) -> DemoFileStats:
    """Streams `events` to `out` as JSON Lines or CSV, optionally gzipped (mtime 0, no file name: reproducible).

    With `bad_share` > 0, about one bad record per 1/bad_share events is written before an event (the
    first of them preceded by a blank line), at seeded positions; its kind rotates through
    `BAD_KINDS[fmt]` starting at `first_bad_kind`. `main_day` defaults to the most common day of the
    valid events. Pass a `seen_ids` set (shared across the files of a set) to count duplicates; it grows
    by every valid id, so leave it out for very large files.
    """
    if fmt not in BAD_KINDS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {sorted(BAD_KINDS)}")
    if not 0.0 <= bad_share < 1.0:
        raise ValueError(f"bad_share must be in [0, 1), not {bad_share}")
    rng = random.Random(seed)
    kinds = BAD_KINDS[fmt]
    stats = DemoFileStats(name=name)
    day_counts: Counter[str] = Counter()
    bad_due = rng.random() if bad_share else 0.0
    inserted_bad = 0
    sink: BinaryIO | gzip_module.GzipFile = (
        gzip_module.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=out, mtime=0) if gzip else out
    )
    try:
        pending = bytearray(CSV_HEADER if fmt == "csv" else b"")
        for event in events:
            bad_due += bad_share
            if bad_due >= 1.0:
                bad_due -= 1.0
                kind = kinds[(first_bad_kind + inserted_bad) % len(kinds)]
                if not inserted_bad:
                    pending += b"\n"
                pending += _bad_line(kind, event, fmt, rng)
                inserted_bad += 1
                stats.bad += 1
                stats.bad_kinds[kind] += 1
            pending += _jsonl_line(event, rng) if fmt == "jsonl" else _csv_line(event)
            if _is_valid(event):
                stats.valid += 1
                day_counts[_utc_day_key(event["timestamp"])] += 1
                if seen_ids is not None:
                    if event["id"] in seen_ids:
                        stats.duplicates += 1
                    else:
                        seen_ids.add(event["id"])
            else:
                stats.bad += 1
                stats.bad_kinds["rejected_input"] += 1
            if len(pending) >= _FLUSH_BYTES:
                sink.write(bytes(pending))
                pending.clear()
        sink.write(bytes(pending))
    finally:
        if gzip:
            sink.close()
    stats.records = stats.valid + stats.bad
    stats.days = {date.fromisoformat(day) for day in day_counts}
    if main_day is None and day_counts:
        main_day = min(stats.days, key=lambda day: (-day_counts[day.isoformat()], day))
    stats.main_day = main_day
    if main_day is not None:
        stats.late = sum(count for day, count in day_counts.items() if date.fromisoformat(day) < main_day)
    return stats


# --- sets and large files -----------------------------------------------------------------------------------------


def _most_common_day(events: list[Event], default: date) -> date:
    counts = Counter(event_day(event) for event in events)
    return min(counts, key=lambda day: (-counts[day], day)) if counts else default


def _deliver_late(batches: list[list[Event]], main_days: list[date], rng: random.Random) -> None:
    """Moves a few events into a later file whose day is 1 to 3 days after theirs, as a late delivery."""
    for index in range(1, len(batches)):
        target_day = main_days[index]
        candidates = [
            (earlier, event)
            for earlier in range(index)
            for event in batches[earlier]
            if 1 <= (target_day - event_day(event)).days <= 3
        ]
        if not candidates:
            continue
        count = min(len(candidates), max(1, round(len(batches[index]) * LATE_SHARE)))
        moved = rng.sample(candidates, count)
        moved_ids = {event["id"] for _, event in moved}
        for earlier in {earlier for earlier, _ in moved}:
            batches[earlier] = [event for event in batches[earlier] if event["id"] not in moved_ids]
        for _, event in moved:
            batches[index].insert(rng.randrange(len(batches[index]) + 1), event)


def _resend_duplicates(batches: list[list[Event]], main_days: list[date], rng: random.Random) -> None:
    """Re-sends a share of earlier files' events, unchanged, in each later file (at-least-once delivery).

    Only events from the file's day or the 3 days before are re-sent, so re-sends are never later than
    late deliveries.
    """
    sent: list[Event] = []
    for batch, day in zip(batches, main_days, strict=True):
        originals = list(batch)
        recent = [event for event in sent if 0 <= (day - event_day(event)).days <= 3]
        if recent:
            for event in rng.sample(recent, min(len(recent), max(1, round(len(batch) * DUPLICATE_SHARE)))):
                batch.insert(rng.randrange(len(batch) + 1), event)
        sent.extend(originals)


def demo_landing_set(seed: int, start: date, days: int, events_per_file: int, files: int) -> list[DemoFile]:
    """A small set of landing files, in memory, for `etl dev` and the tests.

    One stream of `events_per_file * files` events is cut into files in time order; each file is named
    after its main day (`2025-08-01/events-000.jsonl`, `…/events-001.csv`, `…/events-002.jsonl.gz`).
    Later files re-send ~2% of earlier events unchanged and receive ~1% late events (1 to 3 days before
    their day; only when the set spans several days); ~1% of records are bad (at least one per file),
    their kinds rotating across the set. Each file's `stats.valid_events` lists its valid events.
    """
    if files < 1 or events_per_file < 1:
        raise ValueError("a demo set needs at least one file of at least one event")
    rng = random.Random(_mix64(seed) ^ 0x5EED)
    stream = list(generate_events(seed, start, days, events_per_file * files))
    batches = [stream[index * events_per_file : (index + 1) * events_per_file] for index in range(files)]
    main_days = [_most_common_day(batch, start) for batch in batches]
    _deliver_late(batches, main_days, rng)
    _resend_duplicates(batches, main_days, rng)

    seen_ids: set[str] = set()
    bad_so_far = 0
    demo_files = []
    for index, (batch, day) in enumerate(zip(batches, main_days, strict=True)):
        spec = DemoFileSpec.for_index(index, day)
        buffer = io.BytesIO()
        stats = write_landing_file(
            buffer,
            batch,
            spec.fmt,
            spec.gzip,
            bad_share=max(BAD_SHARE, 1 / len(batch)) if batch else 0.0,
            seed=_mix64(seed * 1_000_003 + index),
            main_day=day,
            seen_ids=seen_ids,
            first_bad_kind=bad_so_far,
            name=spec.name,
        )
        stats.valid_events = [event for event in batch if _is_valid(event)]
        bad_so_far += stats.bad
        demo_files.append(DemoFile(spec.name, buffer.getvalue(), stats))
    return demo_files


def write_large_file(
    path: Path,
    events: int,
    seed: int,
    fmt: FileFormat = "jsonl",
    gzip: bool = False,
    start: date = DEFAULT_START,
    days: int = 1,
    bad_share: float = 0.0,
) -> DemoFileStats:
    """Streams `events` generated events to `path` with flat memory, for the benchmarks and memory tests.

    Ids are unique by construction, so `duplicates` is 0 without tracking them; `main_day` is `start`.
    """
    with path.open("wb") as out:
        return write_landing_file(
            out,
            generate_events(seed, start, days, events),
            fmt,
            gzip,
            bad_share=bad_share,
            seed=seed,
            main_day=start,
            name=path.name,
        )

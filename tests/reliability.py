"""Known inputs, and their reconciliation against the warehouse after whatever happened to the runs.

A known input is a list of records the test sends, each knowing what must become of it: the row it must be
in ``events`` (its last version wins when an id is sent more than once) or the quarantine reason it must be
kept under. ``reconcile`` checks the warehouse against that record by record (every expected event once,
with the right content and person; every purchase's order line once, as sent; every bad record in quarantine;
nothing else in ``events`` or ``order_lines``; nothing pending; every identity link the input made once, and no
other) and checks that the platform's own accounting (``etl_assets.quality.reconciliation``) balances and agrees.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Engine, text

from etl_assets.demo.landing_files import generate_events
from etl_assets.quality.reconciliation import reconcile_batches, reconcile_day

MISSING_ID_REASON = "no event id"
MISSING_TYPE_REASON = "no event type"
EVERY_BATCH_DAYS = 36_500


class ExpectedLine(NamedTuple):
    line_number: int
    product_id: str
    quantity: int | None
    price: Decimal | None


@dataclass(frozen=True)
class ExpectedEvent:
    """The columns of an event's row in ``events`` that tell its versions apart."""

    event_id: str
    occurred_at: datetime
    event_type: str
    user_id: str | None
    session_id: str | None
    price: Decimal | None
    lines: tuple[ExpectedLine, ...] = field(default=(), compare=False)
    """Its rows in ``order_lines``: a purchase of one product is a one-line order."""

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> ExpectedEvent:
        """What a canonical event (the demo generator's shape, timestamps in ISO 8601) becomes in ``events``."""
        product = event.get("product") or {}
        price = product.get("price")
        ordered = event["type"] == "purchase" and product.get("id") is not None
        return cls(
            event_id=event["id"],
            occurred_at=datetime.fromisoformat(event["timestamp"]),
            event_type=event["type"],
            user_id=(event.get("user") or {}).get("id"),
            session_id=(event.get("session") or {}).get("id"),
            price=None if price is None else Decimal(price),
            lines=(ExpectedLine(1, product["id"], product.get("quantity"), Decimal(price)),) if ordered else (),
        )


@dataclass(frozen=True)
class InputRecord:
    """One record as sent. ``ref`` is unique and appears inside the record, so its quarantine row can be found."""

    ref: str
    body: dict[str, Any] | str
    """The record; a ``str`` is a line that is not JSON at all."""
    expected: ExpectedEvent | None
    """Its row in ``events`` (when it is the last version of its id); ``None``: it belongs in quarantine."""
    reason: str | None = None
    """The quarantine reason, when one is certain (else any reason will do)."""

    @property
    def event_id(self) -> str | None:
        return self.expected.event_id if self.expected else None

    def line(self) -> bytes:
        return (self.body.encode() if isinstance(self.body, str) else orjson.dumps(self.body)) + b"\n"


@dataclass
class KnownInput:
    records: list[InputRecord]
    deliveries: Counter[str] = field(default_factory=Counter)
    """How often each record was sent, when more than once (a client re-sending what was not acknowledged)."""

    def expected_events(self) -> dict[str, ExpectedEvent]:
        """Each event id's last valid version, in the order the records were sent."""
        latest: dict[str, ExpectedEvent] = {}
        for record in self.records:
            if record.expected is not None:
                latest[record.expected.event_id] = record.expected
        return latest

    def quarantined(self) -> list[InputRecord]:
        return [record for record in self.records if record.expected is None]

    def jsonl(self) -> bytes:
        return b"".join(record.line() for record in self.records)

    def bodies(self) -> list[dict[str, Any]]:
        return [record.body for record in self.records if isinstance(record.body, dict)]

    def links(self) -> dict[str, str]:
        """The identity links the input makes: each identify's anonymous id → its user id."""
        return {
            record.body["anonymous_id"]: record.body["user"]["id"]
            for record in self.records
            if record.expected is not None and record.expected.event_type == "identify"
        }


def shop_input(
    seed: int,
    events: int,
    *,
    start: date = date(2025, 8, 1),
    days: int = 2,
    bad_share: float = 0.04,
    broken_lines: bool = True,
    versions: bool = True,
) -> KnownInput:
    """``events`` generated shop events with, at seeded places, what real inputs hold besides.

    About ``bad_share`` of the events come with a bad record next to them: one without an id (quarantined when
    staged), one without a type (quarantined by the merge) or, with ``broken_lines``, a line cut short
    (not JSON). With ``versions``, some events are sent again further on, unchanged (a re-send) or changed (a
    correction: another session and a later time, sometimes on the next day, which moves the event). Some
    anonymous visitors log in: an ``identify`` further on links their anonymous id to a user of their own, so
    their earlier events (of any day) belong to that user.
    """
    rng = random.Random(seed)
    records: list[InputRecord] = []
    later: list[tuple[int, InputRecord]] = []
    """Records sent again further on, with the position they go before (``len(records)``: at the end)."""
    bad_kinds = ["missing_id", "missing_type", *(["broken_line"] if broken_lines else [])]
    logged_in: set[str] = set()
    for number, event in enumerate(generate_events(seed, start, days, events)):
        ref = f"ref-{seed}-{number:06d}"
        body = {"ref": ref, **event}
        records.append(InputRecord(ref, body, ExpectedEvent.of(body)))
        if rng.random() < bad_share:
            records.append(_bad_record(rng.choice(bad_kinds), f"{ref}-bad", body))
        anonymous = event.get("anonymous_id")
        if anonymous and anonymous not in logged_in and rng.random() < 0.05:
            logged_in.add(anonymous)
            login = {
                "ref": f"{ref}-login",
                "id": f"{event['id']}-login",
                "type": "identify",
                "timestamp": event["timestamp"],
                "user": {"id": f"member-{anonymous}"},
                "anonymous_id": anonymous,
                "traits": {"plan": rng.choice(["free", "pro"])},
            }
            later.append((len(records), InputRecord(login["ref"], login, ExpectedEvent.of(login))))
        if versions and rng.random() < 0.03:
            later.append((len(records), InputRecord(f"{ref}-again", body, ExpectedEvent.of(body))))
        elif versions and rng.random() < 0.03:
            later.append((len(records), _correction(rng, f"{ref}-corrected", body)))
    targets = sorted((rng.randrange(after, len(records) + 1), order) for order, (after, _) in enumerate(later))
    for target, order in reversed(targets):
        records.insert(target, later[order][1])
    return KnownInput(records)


def _bad_record(kind: str, ref: str, body: dict[str, Any]) -> InputRecord:
    if kind == "missing_id":
        return InputRecord(ref, {**{k: v for k, v in body.items() if k != "id"}, "ref": ref}, None, MISSING_ID_REASON)
    bad = {**body, "ref": ref, "id": f"{body['id']}-x"}
    if kind == "missing_type":
        return InputRecord(ref, {**bad, "type": ""}, None, MISSING_TYPE_REASON)
    line = orjson.dumps(bad).decode()
    return InputRecord(ref, line[: line.index('"type"')], None)


def _correction(rng: random.Random, ref: str, body: dict[str, Any]) -> InputRecord:
    shift = timedelta(days=1) if rng.random() < 0.3 else timedelta(minutes=rng.randint(1, 90))
    moment = datetime.fromisoformat(body["timestamp"]) + shift
    corrected = {
        **body,
        "ref": ref,
        "timestamp": moment.isoformat().replace("+00:00", "Z"),
        "session": {"id": f"{ref}-session"},
    }
    return InputRecord(ref, corrected, ExpectedEvent.of(corrected))


def resent_on_other_days(known: KnownInput, seed: int, share: float, start: date, days: int) -> KnownInput:
    """A later file sending about ``share`` of ``known``'s events again, each moved to the next of the ``days``
    days from ``start`` (the last day's to the first): the merges of two days both hold these ids, an older
    version on one day and the newest on the other. Identifies stay where they are."""
    rng = random.Random(seed)
    records = []
    for record in _last_versions(known.records):
        assert record.expected is not None and isinstance(record.body, dict)
        offset = (record.expected.occurred_at.date() - start).days
        if record.expected.event_type == "identify" or not 0 <= offset < days or rng.random() >= share:
            continue
        shift = timedelta(days=1 if offset < days - 1 else 1 - days)
        moment = (record.expected.occurred_at + shift).isoformat().replace("+00:00", "Z")
        moved = {**record.body, "ref": f"{record.ref}-moved", "timestamp": moment}
        records.append(InputRecord(moved["ref"], moved, ExpectedEvent.of(moved)))
    return KnownInput(records)


def feed_input(events: Iterable[Mapping[str, Any]]) -> KnownInput:
    """The events an API served, as a known input (each is its own ref: the feed's events carry no other mark)."""
    return KnownInput([InputRecord(event["id"], dict(event), ExpectedEvent.of(event)) for event in events])


@dataclass
class Reconciliation:
    records: int
    in_events: int = 0
    quarantined: int = 0
    superseded: int = 0
    """Records whose id's row holds another record's version (re-sends, older versions)."""
    lines: int = 0
    """Order lines found once, as sent."""
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    platform: list[str] = field(default_factory=list)
    """Where the platform's own accounting does not balance or disagrees with the input."""

    @property
    def problems(self) -> list[str]:
        named = (
            ("lost", self.lost),
            ("doubled", self.doubled),
            ("in events but never sent", self.extra),
            ("wrong content", self.wrong),
            ("platform accounting", self.platform),
        )
        return [f"{name}: {', '.join(items[:10])}{' …' if len(items) > 10 else ''}" for name, items in named if items]

    def check(self) -> None:
        assert not self.problems, "reconciliation failed:\n" + "\n".join(self.problems)


EVENT_ROWS = text(
    "SELECT event_id, occurred_at, event_type, user_id, session_id, price, anonymous_id, person_id FROM events"
)
LINE_ROWS = text("SELECT event_id, line_number, product_id, quantity, price FROM order_lines")
IDENTITY_LINKS = text("SELECT anonymous_id, user_id, status FROM identity_links")
OPEN_QUARANTINE = text(
    "SELECT stage, reason, event_id, payload::text, raw_record FROM quarantine WHERE resolved_at IS NULL"
)
PENDING_ROWS = text("SELECT count(*) FROM staging_status WHERE status = 'pending'")
OPEN_BATCHES = text("SELECT batch_id FROM raw_batches WHERE staged_at IS NULL ORDER BY batch_id")
STAGED_DAYS = text("SELECT DISTINCT event_day FROM staging_events WHERE event_day IS NOT NULL ORDER BY 1")


def reconcile(engine: Engine, known: KnownInput) -> Reconciliation:
    """Account for every record of ``known`` in the warehouse (see the module's docstring)."""
    expected = known.expected_events()
    with engine.connect() as conn:
        rows = conn.execute(EVENT_ROWS).all()
        line_rows = conn.execute(LINE_ROWS).all()
        quarantine_rows = conn.execute(OPEN_QUARANTINE).all()
        pending = conn.scalar(PENDING_ROWS)
        open_batches = list(conn.scalars(OPEN_BATCHES))
        days = list(conn.scalars(STAGED_DAYS))
        links = conn.execute(IDENTITY_LINKS).all()
    result = Reconciliation(records=len(known.records))

    known_links = known.links()
    found = Counter(row.event_id for row in rows)
    result.doubled = sorted(event_id for event_id, count in found.items() if count > 1)
    result.extra = sorted(set(found) - set(expected))
    result.lost = sorted(set(expected) - set(found))
    have_links = {(link.anonymous_id, link.user_id, link.status) for link in links}
    want_links = {(anonymous, user, "linked") for anonymous, user in known_links.items()}
    result.lost.extend(f"identity link {link}" for link in sorted(want_links - have_links))
    result.extra.extend(f"identity link {link}" for link in sorted(have_links - want_links))
    for row in rows:
        want = expected.get(row.event_id)
        have = ExpectedEvent(row.event_id, row.occurred_at, row.event_type, row.user_id, row.session_id, row.price)
        if want is not None and have != want:
            result.wrong.append(f"{row.event_id} is {have}, expected {want}")
        person = row.user_id or known_links.get(row.anonymous_id) or row.anonymous_id
        if row.person_id != person:
            result.wrong.append(f"{row.event_id} belongs to person {row.person_id}, expected {person}")
    _reconcile_lines(result, expected, line_rows)
    winners = {id(record) for record in _last_versions(known.records)}
    for record in known.records:
        if record.expected is None:
            continue
        if id(record) in winners:
            result.in_events += record.expected.event_id in found
        else:
            result.superseded += 1

    texts = [_quarantine_text(row) for row in quarantine_rows]
    claimed: set[int] = set()
    for record in known.quarantined():
        marker = f'"{record.ref}"'
        matches = [index for index, content in enumerate(texts) if marker in content]
        reasons = [quarantine_rows[index].reason for index in matches]
        if not matches:
            result.lost.append(f"{record.ref} (expected in quarantine)")
        elif len(matches) > max(1, known.deliveries[record.ref]):
            result.doubled.append(f"{record.ref} (quarantined {len(matches)} times)")
        elif record.reason and not all(record.reason in reason for reason in reasons):
            result.wrong.append(f"{record.ref} quarantined for {reasons}, expected {record.reason!r}")
        else:
            result.quarantined += 1
        claimed.update(matches)
    for index, row in enumerate(quarantine_rows):
        if index not in claimed:
            result.extra.append(f"quarantine row ({row.stage}: {row.reason}) {texts[index][:80]!r}")

    if pending:
        result.platform.append(f"{pending} staging rows still pending")
    if open_batches:
        result.platform.append(f"batches never closed: {open_batches}")
    result.platform.extend(_platform_accounting(engine, days, len(expected), len(quarantine_rows)))
    return result


def _reconcile_lines(result: Reconciliation, expected: dict[str, ExpectedEvent], line_rows: list[Any]) -> None:
    """Every expected order line once, as sent; no line of an event that is not expected (or not an order)."""
    found: dict[str, list[ExpectedLine]] = {}
    for row in line_rows:
        found.setdefault(row.event_id, []).append(ExpectedLine(*row[1:]))
    for event_id, event in expected.items():
        have = sorted(found.pop(event_id, []))
        if have == list(event.lines):
            result.lines += len(have)
        elif len(have) > len(event.lines) and set(have) <= set(event.lines):
            result.doubled.append(f"order lines of {event_id}: {have}")
        elif len(have) < len(event.lines):
            result.lost.append(f"order lines of {event_id}: {have}, expected {list(event.lines)}")
        else:
            result.wrong.append(f"order lines of {event_id} are {have}, expected {list(event.lines)}")
    result.extra.extend(f"order lines of {event_id} (not an expected order)" for event_id in sorted(found))


def _last_versions(records: list[InputRecord]) -> list[InputRecord]:
    latest: dict[str, InputRecord] = {}
    for record in records:
        if record.expected is not None:
            latest[record.expected.event_id] = record
    return list(latest.values())


def _quarantine_text(row: Any) -> str:
    raw = bytes(row.raw_record).decode("utf-8", "replace") if row.raw_record is not None else ""
    return f"{row.payload or ''}\n{raw}"


def _platform_accounting(engine: Engine, days: list[date], expected_events: int, quarantine_rows: int) -> list[str]:
    """What ``quality/reconciliation.py`` says, day by day and batch by batch, and whether it agrees with the input."""
    problems = []
    in_events = normalize_quarantined = 0
    for day in days:
        accounting = reconcile_day(engine, day)
        if not accounting.balanced:
            problems.append(
                f"{day}: {accounting.unaccounted} staged records unaccounted, "
                f"{accounting.events_without_record} events rows without a staged record"
            )
        in_events += accounting.total("in_events")
        normalize_quarantined += accounting.total("quarantined")
    parse_quarantined = 0
    for batch in reconcile_batches(engine, EVERY_BATCH_DAYS):
        parse_quarantined += batch.parse_quarantined
        if batch.unaccounted:
            problems.append(f"batch {batch.batch_id}: {batch.unaccounted} records unaccounted")
    if in_events != expected_events:
        problems.append(f"the platform counts {in_events} staged records in events, the input {expected_events} events")
    if normalize_quarantined + parse_quarantined != quarantine_rows:
        problems.append(
            f"the platform accounts for {normalize_quarantined} + {parse_quarantined} quarantined records, "
            f"quarantine holds {quarantine_rows}"
        )
    return problems

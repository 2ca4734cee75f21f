"""What the transform chain costs per record, stage by stage, in µs a row: the Python work ingest pays.

    uv run python -m etl_assets.bench.profile_transform             # 50,000 demo events + 30 % Segment calls
    uv run python -m etl_assets.bench.profile_transform --events 200000 --segment-share 0
    uv run python -m etl_assets.bench.profile_transform --profile   # adds a pyinstrument profile of the chain

The demo events are those of ``etl bench`` (``write_large_file``: the generator's sessions and funnels, JSON Lines
with a mix of timestamp forms). The Segment calls are what an SDK sends through the collector (track with
``context``, page, identify with traits, ``Order Completed`` with products, alias, group), completed by
``segment_messages`` as the collector completes them. Both are written as JSON Lines and read back by
``transform.records.read_file``, as ingest reads a landing file.

Each stage runs over all records at once, ``--repeat`` times, with the cyclic garbage collector off (see
``timed``); the table shows the fastest repetition:

- parse: ``read_file`` over the file's bytes (orjson, one ``ParsedRecord`` a line);
- pseudonymize: ``pseudonymize_payload`` with the default fields and a key;
- normalize, order_lines, identity_facts: the pure transforms;
- row: what ``warehouse.staged_rows.transformed_values`` makes of a result (properties, lines and traits as exact JSON);
- COPY text: psycopg's text formatting of that row, as ``copy.write_row`` does before sending it.
"""

from __future__ import annotations

import argparse
import gc
import io
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from psycopg import _copy_base
from psycopg.adapt import Transformer

from etl_assets.demo.landing_files import DEFAULT_START, catalogue, write_large_file
from etl_assets.transform.days import day_start
from etl_assets.transform.identity import NO_FACTS, IdentityFacts, identity_facts
from etl_assets.transform.normalize import AcceptedTimes, NormalizedEvent, RecordRejected, normalize
from etl_assets.transform.orders import OrderLine, order_lines
from etl_assets.transform.pii import DEFAULT_FIELDS, PiiPolicy, pseudonymize_payload
from etl_assets.transform.records import ParsedRecord, read_file
from etl_assets.transform.segment import segment_messages
from etl_assets.transform.staged import Transformed
from etl_assets.warehouse.staged_rows import transformed_values

ACCEPTED = AcceptedTimes(datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
POLICY = PiiPolicy(DEFAULT_FIELDS, b"profile-transform-key")
"""The plain columns of ``events`` a transform result fills (``properties`` and ``quality_tags`` are formatted)."""


# -- inputs -------------------------------------------------------------------------------------------------------


def demo_lines(events: int, seed: int) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.jsonl"
        write_large_file(path, events, seed=seed, start=DEFAULT_START, days=2)
        return path.read_bytes()


def segment_lines(count: int, seed: int) -> bytes:
    """``count`` Segment calls as the collector stages them, in batches of 20 like the SDKs send."""
    rng = random.Random(seed)
    received = day_start(DEFAULT_START) + timedelta(hours=12)
    out = bytearray()
    made = 0
    while made < count:
        size = min(20, count - made)
        batch = [_segment_call(rng, received, made + number) for number in range(size)]
        body = {"batch": batch, "sentAt": _iso(received), "context": {"library": {"name": "analytics-python"}}}
        for message in segment_messages("batch", body, received):
            out += orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)
        made += size
        received += timedelta(seconds=1)
    return bytes(out)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _segment_call(rng: random.Random, received: datetime, number: int) -> dict[str, Any]:
    products = catalogue()
    user = rng.randrange(5000)
    known = rng.random() < 0.6
    call: dict[str, Any] = {
        "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "timestamp": (received - timedelta(milliseconds=rng.randrange(5000))).isoformat(),
        "context": {
            "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0",
            "locale": "en-US",
            "page": {"path": "/p", "url": "https://shop.example/p", "referrer": "https://www.google.com/"},
        },
        "integrations": {},
    }
    if known:
        call["userId"] = f"user-{user}"
    roll = rng.random()
    product = products[rng.randrange(len(products))]
    if roll < 0.40:
        call |= {
            "type": "track",
            "event": rng.choice(("Product Viewed", "Product Added", "Product Clicked")),
            "properties": {
                "product_id": product.id,
                "sku": f"sku-{product.id}",
                "category": product.category,
                "name": product.url.rsplit("/", 1)[-1],
                "price": float(product.prices["USD"]),
                "currency": "USD",
                "quantity": 1,
                "url": product.url,
            },
        }
    elif roll < 0.65:
        call |= {"type": "page", "name": "Product", "properties": {"url": product.url, "title": "Product"}}
    elif roll < 0.80:
        lines = [products[rng.randrange(len(products))] for _ in range(rng.randrange(1, 4))]
        call |= {
            "type": "track",
            "event": "Order Completed",
            "properties": {
                "order_id": f"o-{number}",
                "revenue": 120.5,
                "total": 130.5,
                "shipping": 5,
                "tax": 5.0,
                "currency": "USD",
                "coupon": "WELCOME",
                "products": [
                    {
                        "product_id": line.id,
                        "sku": f"sku-{line.id}",
                        "name": line.category,
                        "price": float(line.prices["USD"]),
                        "quantity": rng.randrange(1, 3),
                        "position": index,
                    }
                    for index, line in enumerate(lines, start=1)
                ],
            },
        }
    elif roll < 0.92:
        call |= {
            "type": "identify",
            "userId": f"user-{user}",
            "traits": {"email": f"Person{user}@Example.com", "name": f"Person {user}", "plan": "pro"},
        }
    elif roll < 0.97:
        call |= {"type": "track", "event": "Signed Up", "properties": {"plan": "pro", "trial": True}}
    elif roll < 0.99:
        call |= {"type": "alias", "userId": f"user-{user}", "previousId": f"old-{user}"}
    else:
        call |= {"type": "group", "groupId": f"g-{user % 50}", "traits": {"name": "Acme", "employees": 40}}
    return call


def mixed_lines(demo: bytes, segment: bytes, seed: int) -> bytes:
    lines = demo.splitlines(keepends=True) + segment.splitlines(keepends=True)
    random.Random(seed).shuffle(lines)
    return b"".join(lines)


# -- the chain ----------------------------------------------------------------------------------------------------


def parse(data: bytes) -> list[dict[str, Any]]:
    records = list(read_file(io.BytesIO(data), "events.jsonl"))
    return [record.payload for record in records if isinstance(record, ParsedRecord)]


Result = tuple[NormalizedEvent | None, str | None]


def normalized(payload: dict[str, Any]) -> Result:
    try:
        return normalize(payload, ACCEPTED), None
    except RecordRejected as error:
        return None, str(error)


def lines_of(result: Result) -> tuple[OrderLine, ...] | str:
    event, _ = result
    if event is None:
        return ()
    try:
        return order_lines(event)
    except RecordRejected as error:
        return str(error)


def facts_of(result: Result) -> IdentityFacts | str:
    event, _ = result
    if event is None:
        return NO_FACTS
    try:
        return identity_facts(event)
    except RecordRejected as error:
        return str(error)


def row_of(result: Result, lines: tuple[OrderLine, ...] | str, facts: IdentityFacts | str) -> tuple:
    """What ingest writes for one result beside the record (``warehouse.staged_rows.transformed_values``)."""
    event, rejection = result
    if event is None:
        return transformed_values(Transformed(None, rejection=rejection))
    if isinstance(lines, str):
        return transformed_values(Transformed(None, rejection=lines))
    if isinstance(facts, str):
        return transformed_values(Transformed(None, rejection=facts))
    return transformed_values(Transformed(event, lines, facts))


def copy_text() -> Callable[[tuple], Any]:
    return _copy_base.TextFormatter(Transformer()).write_row


# -- measuring ----------------------------------------------------------------------------------------------------


def timed(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs of ``work``, with the cyclic garbage collector off while it runs: a stage
    here holds every record of the run at once, which makes each collection walk them all, while ingest streams
    (its collections find few objects alive)."""
    best = float("inf")
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            result = work()
            best = min(best, time.perf_counter() - started)
        finally:
            gc.enable()
    return best, result


def stages(data: bytes, repeat: int) -> Iterator[tuple[str, float, int]]:
    seconds, payloads = timed(repeat, lambda: parse(data))
    rows = len(payloads)
    yield "parse", seconds, rows
    seconds, hidden = timed(repeat, lambda: [pseudonymize_payload(payload, POLICY) for payload in payloads])
    yield "pseudonymize", seconds, rows
    seconds, results = timed(repeat, lambda: [normalized(payload) for payload in hidden])
    yield "normalize", seconds, rows
    seconds, lines = timed(repeat, lambda: [lines_of(result) for result in results])
    yield "order_lines", seconds, rows
    seconds, facts = timed(repeat, lambda: [facts_of(result) for result in results])
    yield "identity_facts", seconds, rows
    seconds, incoming = timed(repeat, lambda: [row_of(*row) for row in zip(results, lines, facts, strict=True)])
    yield "row (staged_rows.transformed_values)", seconds, rows
    write_row = copy_text()
    seconds, _ = timed(repeat, lambda: [write_row(row) for row in incoming])
    yield "COPY text (psycopg)", seconds, rows


def chain(payloads: list[dict[str, Any]]) -> None:
    for payload in payloads:
        result = normalized(pseudonymize_payload(payload, POLICY))
        row_of(result, lines_of(result), facts_of(result))


def report(name: str, data: bytes, repeat: int) -> None:
    print(f"\n{name}")
    print(f"{'stage':<28}{'µs/row':>10}")
    total = transform = 0.0
    rows = 0
    for stage, seconds, rows in stages(data, repeat):
        per_row = seconds / rows * 1e6
        total += per_row
        if stage not in ("parse", "COPY text (psycopg)"):
            transform += per_row
        print(f"{stage:<28}{per_row:>10.2f}")
    print(f"{'transform + row':<28}{transform:>10.2f}")
    print(f"{'total':<28}{total:>10.2f}   ({rows:,} rows)")


def profile(data: bytes) -> None:
    from pyinstrument import Profiler

    payloads = parse(data)
    profiler = Profiler(interval=0.0002)
    with profiler:
        chain(payloads)
    print(profiler.output_text(unicode=True, color=False, show_all=False, short_mode=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="demo events (default 50,000)")
    parser.add_argument("--segment-share", type=float, default=0.3, help="Segment calls per demo event (0.3)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per stage; the fastest counts (3)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="also profile the mixed chain with pyinstrument")
    arguments = parser.parse_args()

    demo = demo_lines(arguments.events, arguments.seed)
    segment = segment_lines(round(arguments.events * arguments.segment_share), arguments.seed)
    report("demo events (etl bench)", demo, arguments.repeat)
    if segment:
        report("Segment calls", segment, arguments.repeat)
        report("mixed", mixed_lines(demo, segment, arguments.seed), arguments.repeat)
    if arguments.profile:
        profile(mixed_lines(demo, segment, arguments.seed) if segment else demo)


if __name__ == "__main__":
    main()

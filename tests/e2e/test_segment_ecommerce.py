"""A shop's Ecommerce V2 traffic, sent through Segment's own Python SDK to the collector, comes out as the tables
an analyst expects: every message in ``events`` once with its name, every order line once, and
``product_daily_sales`` gross, refunded and net equal to what the test computes from what it sent (multi-line
orders with coupons, a partial refund, a whole cancellation, custom events, page and screen calls).

The collector runs in process on loopback HTTP; the merge is the real ``staged_days_sensor`` and its
``daily_events_job`` run, executed in process against the session's PostgreSQL and S3 endpoint.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from segment.analytics import Client
from sqlalchemy import text

from etl_assets.collector.app import CollectorConfig, create_app
from etl_assets.collector.writer import StagingWriter
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse.engine import create_warehouse_engine
from tests.asgi_server import serve
from tests.harness import pipeline

WRITE_KEY = "wk_shop"
SEED = 17
SALE_DAY = date(2025, 9, 1)
REFUND_DAY = date(2025, 9, 2)
CATALOGUE = {f"sku-{n}": Decimal(price) for n, price in enumerate(("19.99", "5.50", "120.00", "7.25", "42.00"))}
Key = tuple[date, str, str]


class Shop:
    """What the test sent: each message's name, each order's lines, and the sales they must add up to."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.names: dict[str, str] = {}
        self.lines: dict[str, list[tuple[int, str, int, Decimal]]] = {}
        self.orders: dict[str, list[tuple[str, int, Decimal]]] = {}
        self.gross: Counter[Key] = Counter()
        self.refunded: Counter[Key] = Counter()
        self.sold: Counter[Key] = Counter()
        self.units_back: Counter[Key] = Counter()
        self.buyers: defaultdict[Key, set[str]] = defaultdict(set)
        self.coupons: list[tuple[str | None, Decimal | None]] = []

    def track(self, user: str, name: str, at: datetime, **properties: Any) -> str:
        _, message = self.client.track(user, name, properties, timestamp=at)
        self.names[message["messageId"]] = name
        return message["messageId"]

    def page(self, user: str, name: str, at: datetime, *, screen: bool = False) -> None:
        call = self.client.screen if screen else self.client.page
        _, message = call(
            user, category="Shop", name=name, properties={"url": f"https://shop.example/{name}"}, timestamp=at
        )
        self.names[message["messageId"]] = name

    def order(self, user: str, order_id: str, at: datetime, items: list[tuple[str, int]], coupon: str | None) -> None:
        products = [
            {
                "product_id": sku,
                "sku": sku,
                "name": sku.upper(),
                "price": float(CATALOGUE[sku]),
                "quantity": quantity,
                "position": position,
            }
            for position, (sku, quantity) in enumerate(items, start=1)
        ]
        revenue = sum((CATALOGUE[sku] * quantity for sku, quantity in items), Decimal(0))
        extra = {"coupon": coupon, "discount": 2.0} if coupon else {}
        self.coupons.append((coupon, Decimal("2.0000") if coupon else None))
        message_id = self.track(
            user,
            "Order Completed",
            at,
            order_id=order_id,
            revenue=float(revenue),
            total=float(revenue) + 4.9,
            shipping=4.9,
            tax=0.0,
            currency="EUR",
            products=products,
            **extra,
        )
        self.lines[message_id] = [(n, sku, quantity, CATALOGUE[sku]) for n, (sku, quantity) in enumerate(items, 1)]
        self.orders[order_id] = [(sku, quantity, CATALOGUE[sku]) for sku, quantity in items]
        for sku, quantity in items:
            key = (at.date(), sku, "EUR")
            self.gross[key] += CATALOGUE[sku] * quantity
            self.sold[key] += quantity
            self.buyers[key].add(order_id)

    def refund(self, user: str, order_id: str, at: datetime, items: list[tuple[str, int]] | None, name: str) -> None:
        if items is None:  # the whole order
            message_id = self.track(user, name, at, order_id=order_id, currency="EUR")
            items = [(sku, quantity) for sku, quantity, _ in self.orders[order_id]]
        else:
            products = [{"product_id": sku, "price": float(CATALOGUE[sku]), "quantity": q} for sku, q in items]
            message_id = self.track(user, name, at, order_id=order_id, currency="EUR", products=products)
            self.lines[message_id] = [(n, sku, q, CATALOGUE[sku]) for n, (sku, q) in enumerate(items, 1)]
        for sku, quantity in items:
            self.refunded[(at.date(), sku, "EUR")] += CATALOGUE[sku] * quantity
            self.units_back[(at.date(), sku, "EUR")] += quantity

    def expected_sales(self) -> dict[Key, tuple]:
        keys = set(self.gross) | set(self.refunded)
        return {
            key: (
                len(self.buyers[key]),
                self.sold[key],
                self.units_back[key],
                self.sold[key] - self.units_back[key],
                self.gross[key],
                self.refunded[key],
                self.gross[key] - self.refunded[key],
            )
            for key in keys
        }


def shop_traffic(shop: Shop, rng: random.Random) -> None:
    start = datetime.combine(SALE_DAY, datetime.min.time(), UTC) + timedelta(hours=9)
    skus = sorted(CATALOGUE)
    for number in range(8):
        user, at = f"shopper-{number}", start + timedelta(minutes=17 * number)

        def step(minutes: int, at: datetime = at) -> datetime:
            return at + timedelta(minutes=minutes)

        shop.page(user, "Home", step(0))
        shop.page(user, "Onboarding", step(0), screen=True)
        shop.track(user, "Products Searched", step(1), query="boots")
        listed = rng.sample(skus, 3)
        shop.track(
            user,
            "Product List Viewed",
            step(2),
            list_id="boots",
            products=[{"product_id": sku, "position": n} for n, sku in enumerate(listed, 1)],
        )
        shop.track(user, "Product List Filtered", step(2), filters=[{"type": "size", "value": "42"}])
        shop.track(user, "Promotion Viewed", step(3), promotion_id="summer")
        shop.track(user, "Product Clicked", step(3), product_id=listed[0])
        shop.track(
            user, "Product Viewed", step(4), product_id=listed[0], price=float(CATALOGUE[listed[0]]), currency="EUR"
        )
        shop.track(user, "Product Added to Wishlist", step(4), product_id=listed[1])
        shop.track(user, "Signed Up", step(5), plan="newsletter")
        if number % 4 == 3:
            shop.track(user, "Product Removed", step(6), product_id=listed[0])
            continue  # a browser who never buys
        items = [(sku, rng.randint(1, 3)) for sku in listed[: 1 + number % 3]]
        for sku, quantity in items:
            shop.track(user, "Product Added", step(6), product_id=sku, quantity=quantity, price=float(CATALOGUE[sku]))
        shop.track(user, "Cart Viewed", step(7), cart_id=f"cart-{number}")
        shop.track(user, "Checkout Started", step(8), order_id=f"order-{number}", currency="EUR")
        shop.track(user, "Checkout Step Viewed", step(8), step=1)
        shop.track(user, "Checkout Step Completed", step(9), step=1)
        shop.track(user, "Payment Info Entered", step(9), step=2, order_id=f"order-{number}")
        coupon = None
        if number % 2 == 0:
            shop.track(user, "Coupon Entered", step(10), order_id=f"order-{number}", coupon_id="SAVE2")
            shop.track(user, "Coupon Applied", step(10), order_id=f"order-{number}", coupon_id="SAVE2", discount=2.0)
            coupon = "SAVE2"
        else:
            shop.track(user, "Coupon Denied", step(10), order_id=f"order-{number}", coupon_id="OLD", reason="expired")
        shop.order(user, f"order-{number}", step(11), items, coupon)
        shop.track(user, "Order Updated", step(12), order_id=f"order-{number}", currency="EUR")
    after = datetime.combine(REFUND_DAY, datetime.min.time(), UTC) + timedelta(hours=10)
    partial = shop.orders["order-2"]
    shop.refund("shopper-2", "order-2", after, [(partial[0][0], 1)], "Order Refunded")
    shop.refund("shopper-1", "order-1", after + timedelta(minutes=5), None, "Order Cancelled")
    shop.track("shopper-0", "Product Reviewed", after, product_id=skus[0], rating=5)
    shop.track("shopper-0", "Product Shared", after, product_id=skus[0], share_via="email")
    shop.track("shopper-4", "Cart Shared", after, cart_id="cart-4")
    shop.track("shopper-5", "Wishlist Product Added to Cart", after, product_id=skus[1])
    shop.track("shopper-6", "Video Played", after, video="lookbook")


def test_a_shops_ecommerce_traffic_becomes_events_order_lines_and_sales(pipeline_env: dict, definitions):
    engine = create_warehouse_engine(pipeline_env["DATABASE_URL"], pool_size=2, max_overflow=2)
    s3 = s3_client(
        pipeline_env["AWS_ENDPOINT_URL_S3"],
        "us-east-1",
        aws_access_key_id=pipeline_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=pipeline_env["AWS_SECRET_ACCESS_KEY"],
    )
    writer = StagingWriter(
        engine,
        s3,
        pipeline_env["ETL_ARCHIVE_BUCKET"],
        lambda: AcceptedTimes.through_today(date(2025, 1, 1), datetime.now(UTC)),
    )
    config = CollectorConfig(write_keys=frozenset({WRITE_KEY}), retry_after_seconds=0, linger_seconds=0.0)
    errors: list[Exception] = []
    with serve(create_app(config, writer.write, lambda: None)) as url:
        client = Client(
            WRITE_KEY,
            host=url,
            upload_size=50,
            upload_interval=0.05,
            max_retries=3,
            gzip=True,
            on_error=lambda error, batch: errors.append(error),
        )
        shop = Shop(client)
        shop_traffic(shop, random.Random(SEED))
        client.flush()
        client.shutdown()
    assert errors == []

    with pipeline(definitions) as run:
        results = run.tick_and_run("staged_days_sensor")
    assert results and all(result.success for result in results)

    with engine.connect() as conn:
        loaded = conn.execute(text("SELECT event_id, event_name, event_type FROM events")).all()
        lines = conn.execute(
            text("SELECT event_id, line_number, product_id, quantity, price FROM order_lines ORDER BY 1, 2")
        ).all()
        sales = conn.execute(
            text(
                "SELECT day, product_id, currency, orders, units_sold, units_refunded, net_units, gross_revenue, "
                "refunded_revenue, net_revenue FROM product_daily_sales"
            )
        ).all()
        quarantined = conn.scalar(text("SELECT count(*) FROM quarantine"))
        coupons = conn.execute(text("SELECT coupon, discount FROM events WHERE event_name = 'Order Completed'")).all()
    engine.dispose()

    assert quarantined == 0
    assert Counter(event_id for event_id, _, _ in loaded) == dict.fromkeys(shop.names, 1)  # every message once
    assert {event_id: name for event_id, name, _ in loaded} == shop.names
    types = {name: event_type for _, name, event_type in loaded}
    assert (types["Signed Up"], types["Video Played"], types["Order Completed"]) == ("custom", "custom", "purchase")
    assert (types["Home"], types["Onboarding"], types["Order Cancelled"]) == (
        "page_view",
        "page_view",
        "order_cancelled",
    )

    sent_lines = sorted((event_id, *line) for event_id, sent in shop.lines.items() for line in sent)
    assert [tuple(line) for line in lines] == sent_lines  # every line once, as sent
    assert sorted(coupons, key=str) == sorted(shop.coupons, key=str)
    assert {(day, product, currency): tuple(rest) for day, product, currency, *rest in sales} == shop.expected_sales()
    refunds = [row for row in sales if row[0] == REFUND_DAY]
    assert refunds and all(row[5] > 0 and row[8] > 0 and row[9] < 0 for row in refunds)

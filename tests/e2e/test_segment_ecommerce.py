"""A shop's Ecommerce V2 traffic, sent through Segment's own Python SDK to the collector, comes out as the tables
an analyst expects: every message in ``events`` once with its name, every order line once, and
``product_daily_sales`` gross, refunded and net equal to what the test computes from what it sent (multi-line
orders with coupons, a partial refund, a whole cancellation, custom events, page and screen calls).

Its shoppers browse anonymously, some log in mid-visit (``identify``), one on a second device too (``alias``), and
buy as their user id; some buyers' logins reach the platform only after their orders' day merged (a second round
of the SDK), and the sensors re-attribute that day through ``rebuild_requests``. ``events.person_id``,
``identity_links``, ``daily_funnel`` and ``sessions`` must then count persons as the test works them out from what
it sent: a person is the user id, else the user the anonymous id was tied to, else the anonymous id.

The collector runs in process on loopback HTTP; the merge is the real ``staged_days_sensor`` and its
``daily_events_job`` runs, executed in process against the session's PostgreSQL and S3 endpoint.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from segment.analytics import Client
from sqlalchemy import Engine, text

from etl_assets.collector.app import CollectorConfig, create_app
from etl_assets.collector.writer import StagingWriter
from etl_assets.sources.s3 import s3_client
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.warehouse.engine import create_warehouse_engine
from tests.asgi_server import serve
from tests.harness import Pipeline, pipeline

WRITE_KEY = "wk_shop"
SEED = 17
SALE_DAY = date(2025, 9, 1)
REFUND_DAY = date(2025, 9, 2)
SHOPPERS = 8
CATALOGUE = {f"sku-{n}": Decimal(price) for n, price in enumerate(("19.99", "5.50", "120.00", "7.25", "42.00"))}
Key = tuple[date, str, str]

VIEWED = {"Product Viewed"}
CARTED = {"Product Added", "Wishlist Product Added to Cart"}
PURCHASED = {"Order Completed"}
IDENTITY_CALLS = {"identify", "alias"}
"""Calls that say who someone is, not what they did: no activity, in no session."""
SESSION_GAP = timedelta(minutes=30)


class Who(NamedTuple):
    """The ids a message carries."""

    user_id: str | None
    anonymous_id: str | None


class Sent(NamedTuple):
    message_id: str
    name: str
    at: datetime
    who: Who
    previous_id: str | None = None


class Shop:
    """What the test sent: each message, each order's lines, and the sales they must add up to."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sent: list[Sent] = []
        self.lines: dict[str, list[tuple[int, str, int, Decimal]]] = {}
        self.orders: dict[str, list[tuple[str, int, Decimal]]] = {}
        self.gross: Counter[Key] = Counter()
        self.refunded: Counter[Key] = Counter()
        self.sold: Counter[Key] = Counter()
        self.units_back: Counter[Key] = Counter()
        self.buyers: defaultdict[Key, set[str]] = defaultdict(set)
        self.coupons: list[tuple[str | None, Decimal | None]] = []

    @property
    def names(self) -> dict[str, str]:
        return {message.message_id: message.name for message in self.sent}

    def _keep(self, message: dict[str, Any], name: str, at: datetime, who: Who) -> str:
        self.sent.append(Sent(message["messageId"], name, at, who, message.get("previousId")))
        return message["messageId"]

    def track(self, who: Who, name: str, at: datetime, **properties: Any) -> str:
        _, message = self.client.track(who.user_id, name, properties, timestamp=at, anonymous_id=who.anonymous_id)
        return self._keep(message, name, at, who)

    def page(self, who: Who, name: str, at: datetime, *, screen: bool = False) -> None:
        call = self.client.screen if screen else self.client.page
        _, message = call(
            who.user_id,
            category="Shop",
            name=name,
            properties={"url": f"https://shop.example/{name}"},
            timestamp=at,
            anonymous_id=who.anonymous_id,
        )
        self._keep(message, name, at, who)

    def identify(self, who: Who, at: datetime) -> None:
        _, message = self.client.identify(who.user_id, {"plan": "member"}, timestamp=at, anonymous_id=who.anonymous_id)
        self._keep(message, "identify", at, who)

    def alias(self, previous_id: str, user_id: str, at: datetime) -> None:
        _, message = self.client.alias(previous_id, user_id, timestamp=at)
        self._keep(message, "alias", at, Who(user_id, None))

    def order(self, who: Who, order_id: str, at: datetime, items: list[tuple[str, int]], coupon: str | None) -> None:
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
            who,
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

    def refund(self, who: Who, order_id: str, at: datetime, items: list[tuple[str, int]] | None, name: str) -> None:
        if items is None:  # the whole order
            message_id = self.track(who, name, at, order_id=order_id, currency="EUR")
            items = [(sku, quantity) for sku, quantity, _ in self.orders[order_id]]
        else:
            products = [{"product_id": sku, "price": float(CATALOGUE[sku]), "quantity": q} for sku, q in items]
            message_id = self.track(who, name, at, order_id=order_id, currency="EUR", products=products)
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


def buys(number: int) -> bool:
    return number % 4 != 3


def logs_in_late(number: int) -> bool:
    """Shoppers 4, 5 and 6 buy as their user id, but their login (6: an alias) reaches the platform the next
    day, after their orders' day merged."""
    return number in (4, 5, 6)


def shop_traffic(shop: Shop, rng: random.Random) -> None:
    """The first round: eight visits on the sale day, and the next day's refunds and custom events."""
    start = datetime.combine(SALE_DAY, datetime.min.time(), UTC) + timedelta(hours=9)
    skus = sorted(CATALOGUE)
    for number in range(SHOPPERS):
        user, at = f"shopper-{number}", start + timedelta(minutes=17 * number)
        anonymous = Who(None, f"anon-{number}")

        def step(minutes: int, at: datetime = at) -> datetime:
            return at + timedelta(minutes=minutes)

        shop.page(anonymous, "Home", step(0))
        shop.page(anonymous, "Onboarding", step(0), screen=True)
        shop.track(anonymous, "Products Searched", step(1), query="boots")
        listed = rng.sample(skus, 3)
        shop.track(
            anonymous,
            "Product List Viewed",
            step(2),
            list_id="boots",
            products=[{"product_id": sku, "position": n} for n, sku in enumerate(listed, 1)],
        )
        shop.track(anonymous, "Product List Filtered", step(2), filters=[{"type": "size", "value": "42"}])
        shop.track(anonymous, "Promotion Viewed", step(3), promotion_id="summer")
        shop.track(anonymous, "Product Clicked", step(3), product_id=listed[0])
        shop.track(
            anonymous,
            "Product Viewed",
            step(4),
            product_id=listed[0],
            price=float(CATALOGUE[listed[0]]),
            currency="EUR",
        )
        shop.track(anonymous, "Product Added to Wishlist", step(4), product_id=listed[1])
        if number == SHOPPERS - 1:
            known = anonymous  # never logs in
        elif logs_in_late(number):
            known = Who(user, None)  # the shop's server sends the checkout with the user id only
        else:
            shop.identify(Who(user, anonymous.anonymous_id), step(5))  # a login mid-visit
            known = Who(user, None) if number == 1 else Who(user, anonymous.anonymous_id)
        shop.track(known, "Signed Up", step(5), plan="newsletter")
        if not buys(number):  # carts, thinks again, leaves
            shop.track(anonymous, "Product Added", step(6), product_id=listed[0], quantity=1)
            shop.track(known, "Product Removed", step(6), product_id=listed[0])
            continue
        items = [(sku, rng.randint(1, 3)) for sku in listed[: 1 + number % 3]]
        cart = anonymous if logs_in_late(number) else known
        for sku, quantity in items:
            shop.track(cart, "Product Added", step(6), product_id=sku, quantity=quantity, price=float(CATALOGUE[sku]))
        shop.track(cart, "Cart Viewed", step(7), cart_id=f"cart-{number}")
        shop.track(known, "Checkout Started", step(8), order_id=f"order-{number}", currency="EUR")
        shop.track(known, "Checkout Step Viewed", step(8), step=1)
        shop.track(known, "Checkout Step Completed", step(9), step=1)
        shop.track(known, "Payment Info Entered", step(9), step=2, order_id=f"order-{number}")
        coupon = None
        if number % 2 == 0:
            shop.track(known, "Coupon Entered", step(10), order_id=f"order-{number}", coupon_id="SAVE2")
            shop.track(known, "Coupon Applied", step(10), order_id=f"order-{number}", coupon_id="SAVE2", discount=2.0)
            coupon = "SAVE2"
        else:
            shop.track(known, "Coupon Denied", step(10), order_id=f"order-{number}", coupon_id="OLD", reason="expired")
        shop.order(known, f"order-{number}", step(11), items, coupon)
        shop.track(known, "Order Updated", step(12), order_id=f"order-{number}", currency="EUR")
    # Shopper 0 looked at a product on a tablet an hour before the visit (a session of its own), then tied the
    # tablet's id to the account.
    shop.track(Who(None, "anon-0-tablet"), "Product Viewed", start - timedelta(hours=1), product_id=skus[2])
    shop.alias("anon-0-tablet", "shopper-0", start + timedelta(minutes=5))

    after = datetime.combine(REFUND_DAY, datetime.min.time(), UTC) + timedelta(hours=10)
    partial = shop.orders["order-2"]
    shop.refund(Who("shopper-2", None), "order-2", after, [(partial[0][0], 1)], "Order Refunded")
    shop.refund(Who("shopper-1", None), "order-1", after + timedelta(minutes=5), None, "Order Cancelled")
    shop.track(Who("shopper-0", None), "Product Reviewed", after, product_id=skus[0], rating=5)
    shop.track(Who("shopper-0", None), "Product Shared", after, product_id=skus[0], share_via="email")
    shop.track(Who("shopper-4", None), "Cart Shared", after, cart_id="cart-4")
    shop.track(Who("shopper-5", None), "Wishlist Product Added to Cart", after, product_id=skus[1])
    shop.track(Who(None, "anon-6"), "Video Played", after, video="lookbook")


def late_logins(shop: Shop) -> None:
    """The second round, sent after the first merged: the logins of shoppers 4 and 5 on their next visit, and
    shopper 6's alias of the anonymous id it shopped with."""
    at = datetime.combine(REFUND_DAY, datetime.min.time(), UTC) + timedelta(hours=11)
    shop.identify(Who("shopper-4", "anon-4"), at)
    shop.identify(Who("shopper-5", "anon-5"), at + timedelta(minutes=1))
    shop.alias("anon-6", "shopper-6", at + timedelta(minutes=2))


def links_of(sent: Iterable[Sent]) -> dict[str, str]:
    """Anonymous (and previous) id → the user id a message tied it to."""
    links: dict[str, str] = {}
    for message in sent:
        user = message.who.user_id
        for tied in (message.previous_id, message.who.anonymous_id):
            if user is not None and tied is not None and tied != user:
                assert links.setdefault(tied, user) == user, "the traffic ties no id to two users"
    return links


def person_of(message: Sent, links: dict[str, str]) -> str:
    if message.who.user_id is not None:
        return message.who.user_id
    assert message.who.anonymous_id is not None
    return links.get(message.who.anonymous_id, message.who.anonymous_id)


def expected_funnel(sent: list[Sent]) -> dict[date, tuple[int, int, int]]:
    """Viewers, carters (who also viewed) and purchasers (who also carted) per day, as persons."""
    links = links_of(sent)
    stages: defaultdict[date, defaultdict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for message in sent:
        if message.name not in IDENTITY_CALLS:
            stages[message.at.date()][person_of(message, links)].add(message.name)
    funnel = {}
    for day, persons in stages.items():
        viewers = {p for p, names in persons.items() if names & VIEWED}
        carters = {p for p in viewers if persons[p] & CARTED}
        purchasers = {p for p in carters if persons[p] & PURCHASED}
        funnel[day] = (len(viewers), len(carters), len(purchasers))
    return funnel


def expected_sessions(sent: list[Sent]) -> Counter[tuple]:
    """Each person's sessions (30 minutes without activity close one): person, start, end, events, converted."""
    links = links_of(sent)
    activity: defaultdict[str, list[Sent]] = defaultdict(list)
    for message in sent:
        if message.name not in IDENTITY_CALLS:
            activity[person_of(message, links)].append(message)
    sessions: Counter[tuple] = Counter()
    for person, messages in activity.items():
        visits: list[list[Sent]] = []
        for message in sorted(messages, key=lambda m: m.at):
            if visits and message.at - visits[-1][-1].at <= SESSION_GAP:
                visits[-1].append(message)
            else:
                visits.append([message])
        for visit in visits:
            converted = any(m.name in PURCHASED for m in visit)
            sessions[(person, visit[0].at, visit[-1].at, len(visit), converted)] += 1
    return sessions


def settle(run: Pipeline) -> list[date]:
    """Tick staged_days_sensor and execute its runs until it asks for none; the first day of each run."""
    asked = []
    while requests := [r for r in run.tick("staged_days_sensor") if r.run_key not in run.run_keys]:
        asked += [date.fromisoformat(r.tags["dagster/asset_partition_range_start"]) for r in requests]
        run.execute("staged_days_sensor", requests)
    return asked


def funnel_rows(engine: Engine) -> dict[date, tuple[int, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT day, viewers, carters, purchasers FROM daily_funnel")).all()
    return {day: tuple(counts) for day, *counts in rows}


def test_a_shops_traffic_becomes_events_order_lines_sales_and_persons(pipeline_env: dict, definitions):
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
    config = CollectorConfig(write_keys={WRITE_KEY: "segment"}, retry_after_seconds=0, linger_seconds=0.0)
    errors: list[Exception] = []
    with serve(create_app(config, writer.write, lambda: None)) as url, pipeline(definitions) as run:
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
        first_round = list(shop.sent)
        assert settle(run) == [SALE_DAY]  # both days, one run
        funnel_before = funnel_rows(engine)

        late_logins(shop)
        client.shutdown()
        assert errors == []
        # The logins' own day merges; the sale day, whose persons they change, is rebuilt on the sensor's request.
        assert settle(run) == [REFUND_DAY, SALE_DAY]

    with engine.connect() as conn:
        loaded = conn.execute(text("SELECT event_id, event_name, event_type, person_id FROM events")).all()
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
        links = conn.execute(text("SELECT anonymous_id, user_id, status FROM identity_links")).all()
        sessions = conn.execute(
            text("SELECT user_id, started_at, ended_at, events, converted, day FROM sessions")
        ).all()
        waiting_rebuilds = conn.scalar(text("SELECT count(*) FROM rebuild_requests"))
    engine.dispose()

    assert quarantined == 0
    assert Counter(event_id for event_id, *_ in loaded) == dict.fromkeys(shop.names, 1)  # every message once
    assert {event_id: name for event_id, name, *_ in loaded} == shop.names
    types = {name: event_type for _, name, event_type, _ in loaded}
    assert (types["Signed Up"], types["Video Played"], types["Order Completed"]) == ("custom", "custom", "purchase")
    assert (types["Home"], types["Onboarding"], types["Order Cancelled"]) == (
        "page_view",
        "page_view",
        "order_cancelled",
    )
    assert (types["identify"], types["alias"]) == ("identify", "alias")

    sent_lines = sorted((event_id, *line) for event_id, sent in shop.lines.items() for line in sent)
    assert [tuple(line) for line in lines] == sent_lines  # every line once, as sent
    assert sorted(coupons, key=str) == sorted(shop.coupons, key=str)
    assert {(day, product, currency): tuple(rest) for day, product, currency, *rest in sales} == shop.expected_sales()
    refunds = [row for row in sales if row[0] == REFUND_DAY]
    assert refunds and all(row[5] > 0 and row[8] > 0 and row[9] < 0 for row in refunds)

    # Persons: every anonymous id tied to its user once, every event on its person.
    tied = links_of(shop.sent)
    assert Counter((anonymous, user) for anonymous, user, _ in links) == dict.fromkeys(tied.items(), 1)
    assert {status for *_, status in links} == {"linked"}
    assert {event_id: person for event_id, *_, person in loaded} == {
        message.message_id: person_of(message, tied) for message in shop.sent
    }

    # The funnel counts persons: before the late logins, the late buyers were split from their browsing; after, none.
    buyers = {f"shopper-{number}" for number in range(SHOPPERS) if buys(number)}
    late = [number for number in range(SHOPPERS) if logs_in_late(number) and buys(number)]
    assert funnel_before == expected_funnel(first_round)
    assert funnel_before[SALE_DAY][2] == len(buyers) - len(late)
    assert funnel_rows(engine) == expected_funnel(shop.sent)
    viewers, carters, purchasers = funnel_rows(engine)[SALE_DAY]
    assert (viewers, carters, purchasers) == (
        SHOPPERS,
        SHOPPERS,
        len(buyers),
    )  # purchasers among carters are the buyers

    # Each buyer has one converting session, its whole visit from the first anonymous page on.
    assert Counter(tuple(row[:5]) for row in sessions) == expected_sessions(shop.sent)
    assert all(day == started_at.date() for _, started_at, _, _, _, day in sessions)
    converting = Counter(user for user, *_, converted, day in sessions if converted and day == SALE_DAY)
    assert converting == dict.fromkeys(buyers, 1)
    assert waiting_rebuilds == 0

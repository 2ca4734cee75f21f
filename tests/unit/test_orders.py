"""An order event's lines, as a pure function of the normalized event."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from etl_assets.transform.normalize import AcceptedTimes, RecordRejected, normalize
from etl_assets.transform.orders import OrderLine, order_lines

ACCEPTED = AcceptedTimes(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC))


def lines_of(name: str, **properties: Any) -> tuple[OrderLine, ...]:
    message = {"type": "track", "event": name, "messageId": "m1", "timestamp": "2025-08-01T12:00:00Z", "userId": "u"}
    return order_lines(normalize({**message, "properties": properties}, ACCEPTED))


def test_a_multi_line_order_has_a_line_per_product_in_order():
    products = [
        {
            "product_id": "p1",
            "sku": "SKU-1",
            "name": "Sneaker",
            "category": "shoes",
            "brand": "Acme",
            "variant": "red",
            "price": 49.99,
            "quantity": 2,
            "coupon": "SHOES10",
            "position": 3,
            "url": "https://shop.example/p1",
        },
        {"id": "p2", "price": "5", "quantity": "1"},
        {"sku": "SKU-3", "price": 0},
    ]
    lines = lines_of("Order Completed", order_id="o1", revenue=104.98, currency="EUR", products=products)
    assert lines == (
        OrderLine(1, "p1", "SKU-1", "Sneaker", "shoes", "Acme", "red", Decimal("49.9900"), 2, "SHOES10", 3),
        OrderLine(2, "p2", None, None, None, None, None, Decimal("5.0000"), 1, None, None),
        OrderLine(3, "SKU-3", "SKU-3", None, None, None, None, Decimal("0.0000"), None, None, None),
    )
    assert lines[0].as_json()["price"] == "49.9900"


def test_a_partial_refund_has_the_lines_it_lists():
    lines = lines_of("Order Refunded", order_id="o1", products=[{"product_id": "p1", "price": 49.99, "quantity": 1}])
    assert [(line.product_id, line.quantity) for line in lines] == [("p1", 1)]


@pytest.mark.parametrize("name", ["Order Refunded", "Order Cancelled"])
def test_a_whole_refund_or_cancellation_has_no_lines_of_its_own(name: str):
    assert lines_of(name, order_id="o1", total=104.98) == ()


def test_a_flat_purchase_is_a_one_line_order():
    flat = {"id": "e1", "type": "purchase", "timestamp": "2025-08-01T12:00:00Z", "user_id": "u", "order_id": "o1"}
    event = normalize({**flat, "product_id": "p1", "price": "19.99", "quantity": "3", "currency": "EUR"}, ACCEPTED)
    assert order_lines(event) == (OrderLine(1, "p1", None, None, None, None, None, Decimal("19.9900"), 3, None, None),)


@pytest.mark.parametrize("name", ["Checkout Started", "Cart Viewed", "Product List Viewed", "Signed Up"])
def test_events_that_are_not_orders_have_no_lines(name: str):
    assert lines_of(name, products=[{"product_id": "p1", "price": 1}]) == ()


@pytest.mark.parametrize(
    ("products", "reason"),
    [
        ({"product_id": "p1"}, "products is not a list of product objects"),
        (["p1"], "products[0] is not a product object"),
        ([{"product_id": "p1"}, {"product_id": "p2", "price": -1}], "products[1]: negative price -1"),
        ([{"product_id": "p1", "price": "n/a"}], "products[0]: price 'n/a' is not a number"),
        ([{"product_id": "p1", "quantity": 1.5}], "products[0].quantity 1.5 is not a whole number"),
        ([{"product_id": {"a": 1}}], "products[0].product_id {'a': 1} is not a string or a number"),
    ],
)
def test_a_product_that_cannot_be_a_line_rejects_the_order_with_the_reason(products: Any, reason: str):
    with pytest.raises(RecordRejected) as raised:
        lines_of("Order Completed", order_id="o1", products=products)
    assert str(raised.value) == reason

"""The open vocabulary: every Ecommerce V2 name has its type, any other name is kept as a custom event, and page
and screen calls keep their name and category."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from etl_assets.transform.normalize import AcceptedTimes, normalize
from etl_assets.transform.vocabulary import CUSTOM, EVENT_TYPES, SPEC_EVENT_TYPES, event_type_of

ACCEPTED = AcceptedTimes(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC))
MESSAGE = {"messageId": "m1", "timestamp": "2025-08-01T12:00:00Z", "userId": "u1"}

SPEC = {
    "Products Searched": "search",
    "Product List Viewed": "product_list_view",
    "Product List Filtered": "product_list_filter",
    "Promotion Viewed": "promotion_view",
    "Promotion Clicked": "promotion_click",
    "Product Clicked": "product_click",
    "Product Viewed": "product_view",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
    "Cart Viewed": "cart_view",
    "Checkout Started": "checkout_started",
    "Checkout Step Viewed": "checkout_step_view",
    "Checkout Step Completed": "checkout_step_complete",
    "Payment Info Entered": "payment_info_entered",
    "Order Updated": "order_updated",
    "Order Completed": "purchase",
    "Order Refunded": "order_refunded",
    "Order Cancelled": "order_cancelled",
    "Coupon Entered": "coupon_entered",
    "Coupon Applied": "coupon_applied",
    "Coupon Denied": "coupon_denied",
    "Coupon Removed": "coupon_removed",
    "Product Added to Wishlist": "wishlist_add",
    "Product Removed from Wishlist": "wishlist_remove",
    "Wishlist Product Added to Cart": "add_to_cart",
    "Product Shared": "product_share",
    "Cart Shared": "cart_share",
    "Product Reviewed": "product_review",
}
"""Segment's Ecommerce Events V2 spec, written out here on its own (not read from the code under test)."""


def track(name: str, **properties: Any) -> dict[str, Any]:
    return {**MESSAGE, "type": "track", "event": name, "properties": properties}


def test_the_vocabulary_knows_the_whole_spec_and_nothing_else_by_its_spec_name():
    assert SPEC_EVENT_TYPES == SPEC


@pytest.mark.parametrize(("name", "event_type"), SPEC.items())
def test_every_spec_event_keeps_its_name_and_gets_its_type(name: str, event_type: str):
    event = normalize(track(name), ACCEPTED)
    assert (event.event_name, event.event_type) == (name, event_type)


@pytest.mark.parametrize("name", ["order refunded", "ORDER_REFUNDED", "order-refunded", "order_refunded"])
def test_other_spellings_of_a_spec_name_get_its_type(name: str):
    assert event_type_of(name) == "order_refunded"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_canonical_type_names_itself(event_type: str):
    assert event_type_of(event_type) == event_type


@pytest.mark.parametrize("name", ["Signed Up", "Video Played", "teleport", "Ørder Cømpleted", "login"])
def test_any_other_name_is_kept_as_a_custom_event(name: str):
    event = normalize(track(name, plan="pro", total="monthly"), ACCEPTED)
    assert (event.event_name, event.event_type) == (name, CUSTOM)
    assert event.total is None
    assert event.properties == {"plan": "pro", "total": "monthly"}


def test_a_landing_file_type_is_its_name():
    event = normalize(
        {"id": "e1", "type": "product_view", "timestamp": "2025-08-01T12:00:00Z", "user_id": "u"}, ACCEPTED
    )
    assert (event.event_name, event.event_type) == ("product_view", "product_view")


@pytest.mark.parametrize("call", ["page", "screen"])
def test_page_and_screen_calls_keep_their_name_and_category(call: str):
    message = {**MESSAGE, "type": call, "name": "Shoes", "category": "Catalogue", "properties": {"url": "https://x/"}}
    event = normalize(message, ACCEPTED)
    assert (event.event_type, event.event_name, event.page_category) == ("page_view", "Shoes", "Catalogue")
    assert event.page_url == "https://x/"
    assert event.properties is None


def test_a_page_call_without_a_name_is_named_by_its_call():
    event = normalize({**MESSAGE, "type": "screen", "properties": {"category": "Onboarding"}}, ACCEPTED)
    assert (event.event_type, event.event_name, event.page_category) == ("page_view", "screen", "Onboarding")


def test_an_order_keeps_its_money_on_the_event():
    event = normalize(
        track(
            "Order Completed",
            order_id="o1",
            revenue=25.0,
            total=27.5,
            shipping=3,
            tax="2.5",
            discount=2.5,
            coupon="SUMMER",
            currency="usd",
            products=[{"product_id": "p1", "price": 12.5, "quantity": 2}],
        ),
        ACCEPTED,
    )
    money = (event.revenue, event.total, event.shipping, event.tax, event.discount)
    assert [str(amount) for amount in money] == ["25.0000", "27.5000", "3.0000", "2.5000", "2.5000"]
    assert (event.order_id, event.coupon, event.currency) == ("o1", "SUMMER", "USD")
    assert event.quality_tags == ()
    assert event.properties == {"products": [{"product_id": "p1", "price": 12.5, "quantity": 2}]}


def test_a_purchase_with_neither_price_nor_products_nor_revenue_is_tagged():
    assert normalize(track("Order Completed", order_id="o1"), ACCEPTED).quality_tags == ("purchase_without_price",)
    assert normalize(track("Order Completed", total=3), ACCEPTED).quality_tags == ("currency_missing",)

"""The platform's event vocabulary, shared by the transforms and the warehouse schema.

Every event keeps the name it was sent with (``events.event_name``); ``event_type`` is its canonical meaning.
Segment's Ecommerce Events V2 spec (which RudderStack and Jitsu follow with the same names) maps onto the types
below; a name the vocabulary does not know is a ``custom`` event, never a reason to refuse it.
"""

from __future__ import annotations

from functools import lru_cache

CUSTOM = "custom"
"""The catch-all type: an event name the vocabulary gives no meaning of its own (``Signed Up``, ``Video Played``)."""

PURCHASE = "purchase"
ORDER_UPDATED = "order_updated"
ORDER_REFUNDED = "order_refunded"
ORDER_CANCELLED = "order_cancelled"

SPEC_EVENT_TYPES: dict[str, str] = {
    # browsing
    "Products Searched": "search",
    "Product List Viewed": "product_list_view",
    "Product List Filtered": "product_list_filter",
    # promotions
    "Promotion Viewed": "promotion_view",
    "Promotion Clicked": "promotion_click",
    # core ordering
    "Product Clicked": "product_click",
    "Product Viewed": "product_view",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
    "Cart Viewed": "cart_view",
    "Checkout Started": "checkout_started",
    "Checkout Step Viewed": "checkout_step_view",
    "Checkout Step Completed": "checkout_step_complete",
    "Payment Info Entered": "payment_info_entered",
    "Order Updated": ORDER_UPDATED,
    "Order Completed": PURCHASE,
    "Order Refunded": ORDER_REFUNDED,
    "Order Cancelled": ORDER_CANCELLED,
    # coupons
    "Coupon Entered": "coupon_entered",
    "Coupon Applied": "coupon_applied",
    "Coupon Denied": "coupon_denied",
    "Coupon Removed": "coupon_removed",
    # wishlisting
    "Product Added to Wishlist": "wishlist_add",
    "Product Removed from Wishlist": "wishlist_remove",
    "Wishlist Product Added to Cart": "add_to_cart",
    # sharing
    "Product Shared": "product_share",
    "Cart Shared": "cart_share",
    # reviewing
    "Product Reviewed": "product_review",
}
"""Segment's Ecommerce V2 event names → ``event_type``. ``Wishlist Product Added to Cart`` adds to the cart (the
funnel counts it as such); its name still tells it apart."""

PAGE_VIEW = "page_view"
PAGE_CALLS = ("page", "screen")
"""Segment call types whose ``name`` is the page's (or screen's) name and whose ``category`` is kept too."""

LEGACY_NAMES: dict[str, str] = {
    **{name: PAGE_VIEW for name in ("pageview", "page", "pageviewed", "screen", "screenview", "screenviewed")},
    **{name: "product_view" for name in ("productview", "viewitem", "product")},
    **{name: "add_to_cart" for name in ("addtocart", "cartadd", "add", "addedtocart")},
    **{name: "remove_from_cart" for name in ("removefromcart", "cartremove", "removedfromcart")},
    **{name: "checkout_started" for name in ("begincheckout", "checkout")},
    **{name: PURCHASE for name in ("order", "purchased")},
}
"""Other spellings landing files and APIs send (compared without case, spaces, dashes and underscores)."""

IDENTITY_CALL_TYPES = ("identify", "alias", "group")
"""Segment's calls that say who someone is rather than what they did: kept in ``events`` under their own type,
fed to the identity graph (``users``, ``identity_links``, ``group_memberships``), left out of every activity count."""

EVENT_TYPES = tuple(
    dict.fromkeys(
        (
            PAGE_VIEW,
            *SPEC_EVENT_TYPES.values(),
            ORDER_REFUNDED,
            ORDER_CANCELLED,
            ORDER_UPDATED,
            CUSTOM,
            *IDENTITY_CALL_TYPES,
        )
    )
)
"""Every canonical type, in the order the README lists them."""

ORDER_EVENT_TYPES = (PURCHASE, ORDER_UPDATED, ORDER_REFUNDED, ORDER_CANCELLED)
"""Types whose products become rows of ``order_lines``."""
ORDER_AMOUNT_TYPES = frozenset(
    (
        "cart_view",
        "checkout_started",
        "checkout_step_view",
        "checkout_step_complete",
        "payment_info_entered",
        *ORDER_EVENT_TYPES,
        "coupon_entered",
        "coupon_applied",
        "coupon_denied",
        "coupon_removed",
    )
)
"""Types whose revenue, total, shipping, tax, discount and coupon are the order's (columns of ``events``); on any
other event such fields stay in ``properties``, whatever they hold."""
REFUND_EVENT_TYPES = (ORDER_REFUNDED, ORDER_CANCELLED)
"""Types that take their lines (or, without products, the whole order) back in ``product_daily_sales``."""


def comparable(name: str) -> str:
    """A name as the vocabulary compares it: no case, spaces, dashes or underscores (``Order Completed`` is
    ``order_completed`` is ``ORDER-COMPLETED``)."""
    return _known_comparable(name) if len(name) <= _CACHED_CHARS else _comparable(name)


def _comparable(name: str) -> str:
    return name.lower().replace(" ", "").replace("-", "").replace("_", "")


_CACHED_CHARS = 64
"""Names up to this long are remembered: every event carries one, and a stream repeats a few of them."""
_known_comparable = lru_cache(maxsize=4096)(_comparable)


_TYPES_BY_NAME: dict[str, str] = {
    **LEGACY_NAMES,
    **{comparable(name): event_type for name, event_type in SPEC_EVENT_TYPES.items()},
    **{comparable(event_type): event_type for event_type in EVENT_TYPES},
}


def event_type_of(name: str) -> str:
    """The canonical type of an event name; ``custom`` for a name the vocabulary does not know."""
    return _TYPES_BY_NAME.get(comparable(name), CUSTOM)

"""An order event's lines: one per product, as pure data (the rows of ``order_lines``).

An order event (``Order Completed``, ``Order Updated``, ``Order Refunded``, ``Order Cancelled`` and their
other spellings) has a line per object of its ``products`` list, numbered from 1 in the list's order. A flat
order without ``products`` but with a product of its own (a landing file's ``purchase`` with ``product_id``,
``price`` and ``quantity``) has that one line. A refund or cancellation with neither has no lines: it takes the
whole order back, which ``product_daily_sales`` finds in SQL from the order's own lines.

The ``products`` list stays in the event's ``properties`` as sent; the lines are derived from it, so the event's
``content_hash`` changes exactly when its lines do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from etl_assets.transform.normalize import (
    NormalizedEvent,
    RecordRejected,
    parse_id,
    parse_price,
    parse_text,
    parse_whole_number,
)
from etl_assets.transform.vocabulary import ORDER_EVENT_TYPES

_PRODUCT_ID_KEYS = ("product_id", "productId", "id", "sku")
"""Where a product's id is: Segment V2's ``product_id``, V1's ``id``, and its ``sku`` when it has no other."""


@dataclass(frozen=True, slots=True)
class OrderLine:
    line_number: int
    product_id: str | None
    sku: str | None
    name: str | None
    category: str | None
    brand: str | None
    variant: str | None
    price: Decimal | None
    quantity: int | None
    coupon: str | None
    position: int | None

    def as_json(self) -> dict[str, Any]:
        """The line as JSON values (prices as exact decimal text), the shape the merge reads lines in."""
        return {
            "line_number": self.line_number,
            "product_id": self.product_id,
            "sku": self.sku,
            "name": self.name,
            "category": self.category,
            "brand": self.brand,
            "variant": self.variant,
            "price": None if self.price is None else str(self.price),
            "quantity": self.quantity,
            "coupon": self.coupon,
            "position": self.position,
        }


def order_lines(event: NormalizedEvent) -> tuple[OrderLine, ...]:
    """The lines of ``event`` (none unless it is an order event); a product that cannot be a line raises
    ``RecordRejected`` with the reason, as any bad value of the event does."""
    if event.event_type not in ORDER_EVENT_TYPES:
        return ()
    products = (event.properties or {}).get("products")
    if products is None or products == []:
        if event.product_id is None:
            return ()
        return (OrderLine(1, event.product_id, None, None, None, None, None, event.price, event.quantity, None, None),)
    if not isinstance(products, list):
        raise RecordRejected("products is not a list of product objects")
    return tuple(_line(number, product) for number, product in enumerate(products, start=1))


def _line(number: int, product: Any) -> OrderLine:
    where = f"products[{number - 1}]"
    if not isinstance(product, Mapping):
        raise RecordRejected(f"{where} is not a product object")
    product_id = None
    for key in _PRODUCT_ID_KEYS:
        product_id = _parsed(product, key, where, parse_id)
        if product_id is not None:
            break
    try:
        price = parse_price(_given(product, "price"))
    except RecordRejected as error:
        raise RecordRejected(f"{where}: {error}", rule=error.rule) from None
    return OrderLine(
        line_number=number,
        product_id=product_id,
        sku=_parsed(product, "sku", where, parse_id),
        name=_parsed(product, "name", where, parse_text),
        category=_parsed(product, "category", where, parse_text),
        brand=_parsed(product, "brand", where, parse_text),
        variant=_parsed(product, "variant", where, parse_text),
        price=price,
        quantity=_parsed(product, "quantity", where, parse_whole_number),
        coupon=_parsed(product, "coupon", where, parse_text),
        position=_parsed(product, "position", where, parse_whole_number),
    )


def _given(product: Mapping[str, Any], key: str) -> Any:
    """The product's value under ``key``; a blank text reads as missing (``None``)."""
    found = product.get(key)
    return None if isinstance(found, str) and (not found or found.isspace()) else found


def _parsed(product: Mapping[str, Any], key: str, where: str, parse: Callable[[Any, str], Any]) -> Any:
    """``parse`` of the product's value under ``key``, the value named ``<where>.<key>`` in a rejection."""
    found = _given(product, key)
    return None if found is None else parse(found, f"{where}.{key}")

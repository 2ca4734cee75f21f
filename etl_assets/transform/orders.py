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

from collections.abc import Mapping
from dataclasses import asdict, dataclass
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
        line = asdict(self)
        if self.price is not None:
            line["price"] = str(self.price)
        return line


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

    def value(key: str) -> Any:
        found = product.get(key)
        return None if isinstance(found, str) and (not found or found.isspace()) else found

    product_id = next(
        (found for key in _PRODUCT_ID_KEYS if (found := parse_id(value(key), f"{where}.{key}")) is not None), None
    )
    try:
        price = parse_price(value("price"))
    except RecordRejected as error:
        raise RecordRejected(f"{where}: {error}", rule=error.rule) from None
    return OrderLine(
        line_number=number,
        product_id=product_id,
        sku=parse_id(value("sku"), f"{where}.sku"),
        name=parse_text(value("name"), f"{where}.name"),
        category=parse_text(value("category"), f"{where}.category"),
        brand=parse_text(value("brand"), f"{where}.brand"),
        variant=parse_text(value("variant"), f"{where}.variant"),
        price=price,
        quantity=parse_whole_number(value("quantity"), f"{where}.quantity"),
        coupon=parse_text(value("coupon"), f"{where}.coupon"),
        position=parse_whole_number(value("position"), f"{where}.position"),
    )

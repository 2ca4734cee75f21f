"""The platform's event vocabulary, shared by the transforms and the warehouse schema."""

EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout_started", "purchase")

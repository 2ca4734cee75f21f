"""The platform's event vocabulary, shared by the transforms and the warehouse schema."""

IDENTITY_CALL_TYPES = ("identify", "alias", "group")
"""Segment's calls that say who someone is rather than what they did: kept in ``events`` under their own type,
fed to the identity graph (``users``, ``identity_links``, ``group_memberships``), left out of every activity count."""

EVENT_TYPES = (
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
    "purchase",
    *IDENTITY_CALL_TYPES,
)

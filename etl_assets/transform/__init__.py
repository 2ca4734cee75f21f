"""Pure transforms: how a record changes. No Dagster, SQLAlchemy, boto3 or requests here.

Input in, output out, deterministic; unit-tested as pure functions.
"""

TRANSFORM_VERSION = "4"
"""Version of what ``normalize`` makes of a record. Bump it when its output changes: it is the
``code_version`` of ``events``, so the UI shows every day as stale, and a day's next merge reprocesses
the staging rows an older version processed.

History: 1, the first normalize; 2, PII pseudonymized before normalize (``transform.pii``); 3, ids of more
than 1,024 bytes and ids sent as floats too large to be exact (beyond 2**53) are rejected instead of loaded, and
numbers a double cannot hold (past 64-bit integers, past 15 significant digits) keep their digits
(``transform.exact_json``); 4, any event name is kept (``event_name``) and mapped onto the Ecommerce V2 vocabulary
(``custom`` at worst), orders keep their money and their lines (``transform.orders``), and identify, alias and
group calls load as events of their own type and feed the identity graph (``transform.identity``)."""

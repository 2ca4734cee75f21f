"""How rows reach the database: the schema and its migrations, engines, day partitions, COPY into staging, the
exactly-once merge into ``events``, the daily tables rebuilt in SQL, retention, and the staging gate's holds. The
checks run over those tables (contracts, drift, reconciliation) are a layer of their own, ``etl_assets.quality``,
which imports this package and is never imported by it.

How SQL is written: every statement that reads or writes the warehouse lives in this package (or in
``etl_assets.quality``, which follows the same rule), as a named module-level ``text()`` constant beside the
function that runs it (``merge.py``, ``identity.py``); code outside those two calls their functions and writes no
SQL. The values a status or stage column may hold are constants of ``schema.py``, next to the constraints that
allow them, and are interpolated into the SQL, never retyped. Every temporary table is made by
``copy.temp_table``. Two exceptions, each for a reason:

- SQLAlchemy Core where a query is a value other code composes or inspects: the daily tables' queries
  (``enrichment.py``), which the IO manager narrows to a partition window, ``rebuild.py`` inserts and
  ``lineage.py`` reads column lineage from; and, as they were tuned, the staging writes of ``staging.py`` (a
  chunk's rows as one multi-row ``INSERT``). ``etl_assets.quality`` names its own.
- ``psycopg.sql`` only where a statement goes to the driver's cursor with identifiers it must quote: ``COPY``
  into a named table (``copy.py``), and outside this package the bench's and the local stack's
  ``CREATE DATABASE``/``CREATE ROLE``.
"""

"""How rows reach the database: the schema and its migrations, engines, day partitions, COPY into staging, the
exactly-once merge into ``events``, the daily tables rebuilt in SQL, retention, and the data contracts, quality
checks, drift and reconciliation run over those tables.

How SQL is written: every statement that reads or writes the warehouse lives in this package, as a named
module-level ``text()`` constant beside the function that runs it (``merge.py``, ``identity.py``); code outside
``warehouse/`` calls those functions and writes no SQL. The values a status or stage column may hold are
constants of ``schema.py``, next to the constraints that allow them, and are interpolated into the SQL, never
retyped. Every temporary table is made by ``copy.temp_table``. Two exceptions, each for a reason:

- SQLAlchemy Core where a query is a value other code composes or inspects: the daily tables' queries
  (``enrichment.py``), which the IO manager narrows to a partition window, ``rebuild.py`` inserts and
  ``lineage.py`` reads column lineage from, and the contracts' queries built per table (``quality.py``); and,
  as they were tuned, the staging writes of ``staging.py`` (a chunk's rows as one multi-row ``INSERT``) and the
  payload profiling of ``drift.py``.
- ``psycopg.sql`` only where a statement goes to the driver's cursor with identifiers it must quote: ``COPY``
  into a named table (``copy.py``), and outside this package the bench's and the local stack's
  ``CREATE DATABASE``/``CREATE ROLE``.
"""

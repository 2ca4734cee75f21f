"""How rows reach the database: the schema and its migrations, engines, day partitions, COPY into staging, the
exactly-once merge into ``events``, the daily tables rebuilt in SQL, retention, and the data contracts, quality
checks, drift and reconciliation run over those tables."""

"""The quality layer: the data contracts of the warehouse tables (``contracts``), the contracts run over a day of a
table in bounded memory and the staging gate's verdict per source (``day_checks``), the drift of the fields sources
send (``drift``), and the reconciliation that accounts for every record that entered (``reconciliation``).

It reads and writes the warehouse through SQL it owns and calls ``etl_assets.warehouse`` for the rest (the tables,
what waits to merge, the staging gate's holds); ``warehouse`` never imports it. It never imports Dagster:
``etl_assets.defs`` turns its reports into asset checks.

Its SQL follows the rule written in ``etl_assets.warehouse``: named ``text()`` constants, the status and stage
values interpolated from ``schema.py`` (``reconciliation.py``), with SQLAlchemy Core in two places, each for a
reason: the contracts' queries, built per table from its columns (``day_checks.py``), and, as it was tuned, the
payload profiling (``drift.py``).
"""

"""The thin Dagster layer: what each asset, check, sensor and job is, and when it runs.

Every module under this package is loaded by ``dagster.load_from_defs_folder`` (see
``etl_assets.definitions``); how records change lives in ``etl_assets.transform``, how rows reach
the database in ``etl_assets.warehouse`` and ``etl_assets.io_managers``, and the checks over them in
``etl_assets.quality``.
"""

"""The figures every write of the pipeline shows on its materialization, under the same names: the UI, the
README's screenshots and the tests read them by these labels."""

from __future__ import annotations

import time

import dagster as dg


def write_figures(rows: int, seconds: float, errors: int | None = None) -> dict[str, dg.MetadataValue]:
    """``rows per second`` (``rows`` over ``seconds``, 0 when no time was measured), ``seconds``, ``succeeded at``
    (now) and, when given, ``errors`` (the rows turned away: quarantined or rejected)."""
    figures: dict[str, dg.MetadataValue] = {
        "rows per second": dg.MetadataValue.float(round(rows / seconds, 1) if seconds > 0 else 0.0),
        "seconds": dg.MetadataValue.float(round(seconds, 3)),
        "succeeded at": dg.MetadataValue.timestamp(time.time()),
    }
    if errors is not None:
        figures["errors"] = dg.MetadataValue.int(errors)
    return figures

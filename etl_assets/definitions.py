"""The one Definitions object of the code location: everything under ``etl_assets/defs``.

Kept light at import (no connections, no listing): the webserver, the daemon and every run import it.
"""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)

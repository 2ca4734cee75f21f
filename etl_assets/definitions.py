"""The one Definitions object of the code location: everything under ``etl_assets/defs``, and its resources.

Kept light at import (no connections, no listing): the webserver, the daemon and every run import it. The
settings are read once here, as the code location loads, and bound with the resources (the ``settings`` resource
among them).
"""

from pathlib import Path

import dagster as dg

from etl_assets.defs.resources import platform_resources
from etl_assets.settings import Settings


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(resources=platform_resources(Settings.from_env())),
    )

"""Whether the sensors that move data through the pipeline start running on their own.

``etl dev`` sets ETL_SENSORS_RUNNING for its Dagster processes, so the landing, staged-days and events API sensors
run from the start and the seeded week loads with no click; ``etl dev --paused`` and every production deployment
leave it unset, so those sensors wait, stopped, for an operator. A sensor started or stopped in the UI keeps that
state either way (Dagster's stored state wins over a default).
"""

import dagster as dg

from etl_assets.settings import definition_settings

PIPELINE_SENSOR_STATUS = (
    dg.DefaultSensorStatus.RUNNING if definition_settings().sensors_running else dg.DefaultSensorStatus.STOPPED
)

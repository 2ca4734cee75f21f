"""How a run executes its steps: one after another, in the run's own process.

Every step of this code location is SQL the database does, or a file or API page streamed into it; a
process per step (Dagster's multiprocess default) would only add seconds of Python start-up to each
step. Measured on 2 busy cores: events and its four daily tables for one day, clicked in the UI, took
110 s with a process per step for under 3 s of SQL.
"""

import dagster as dg


@dg.definitions
def executor() -> dg.Definitions:
    return dg.Definitions(executor=dg.in_process_executor)

"""The files of one ingest run stage in the run's order, whichever thread is ready first."""

import threading
import time

from etl_assets.defs.ingest import StagingTurns


def test_files_stage_in_the_runs_order_whatever_thread_gets_there_first():
    turns = StagingTurns()
    order: list[int] = []

    def stage(index: int) -> None:
        time.sleep((5 - index) * 0.01)  # the last file's thread is ready first
        with turns.turn(index):
            order.append(index)

    threads = [threading.Thread(target=stage, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert order == [0, 1, 2, 3, 4, 5]


def test_a_file_that_never_stages_lets_the_next_one_through():
    turns = StagingTurns()
    turns.done(0)  # failed before staging, or not tried
    turns.done(0)  # said twice changes nothing
    with turns.turn(1):
        pass
    with turns.turn(2):
        pass

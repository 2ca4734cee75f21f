"""A batch's records are read in chunks by a thread of its own, started at once and one chunk ahead of the staging,
each record keyed and digested once; a chunk is a list, kept whole for a retried transaction."""

import sys
import threading
import time

import pytest

from etl_assets.transform.records import ParsedRecord, RejectedRecord
from etl_assets.transform.staged import payload_digest
from etl_assets.warehouse.staging import READER_SWITCH_INTERVAL, StagingCounts, _ReadAhead

PREFIX = b"v\x1fsource\x1f\x1f-\x1f"


def counted(total: int, pulled: list[int], *, fail_after: int | None = None):
    for number in range(1, total + 1):
        if number == fail_after:
            raise OSError("the connection to the store was reset")
        pulled.append(number)
        yield ParsedRecord(number, {"messageId": f"m-{number}"}, f'{{"messageId": "m-{number}"}}')


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the reader never got there"
        time.sleep(0.005)


def test_chunks_cover_every_record_once_in_order_with_its_id_and_digest():
    pulled: list[int] = []
    records = [*counted(6, pulled), RejectedRecord(7, "not JSON", b"{")]
    with _ReadAhead(records, 3, PREFIX, StagingCounts()) as reader:
        chunks = list(reader)
    assert [[record.record_no for record in chunk.records] for chunk in chunks] == [[1, 2, 3], [4, 5, 6], [7]]
    assert chunks[0].event_ids == ["m-1", "m-2", "m-3"]
    assert chunks[0].digests[1] == payload_digest(PREFIX, '{"messageId": "m-2"}')
    assert (chunks[2].event_ids, chunks[2].digests) == ([None], [None])


def test_the_reader_stays_one_chunk_ahead_of_the_staging():
    pulled: list[int] = []
    chunks = _ReadAhead(counted(10, pulled), 3, PREFIX, StagingCounts())
    first = next(chunks)
    wait_until(lambda: len(pulled) >= 6)  # the second chunk is read while the first is staged...
    time.sleep(0.05)
    assert pulled == [1, 2, 3, 4, 5, 6]  # ...and no third before the second is taken
    assert [record.record_no for record in first.records] == [1, 2, 3]
    assert [record.record_no for record in next(chunks).records] == [4, 5, 6]
    chunks.close()


def test_an_error_of_the_source_is_raised_where_its_chunk_would_come():
    pulled: list[int] = []
    with _ReadAhead(counted(10, pulled, fail_after=5), 3, PREFIX, StagingCounts()) as chunks:
        assert [record.record_no for record in next(chunks).records] == [1, 2, 3]
        with pytest.raises(OSError, match="reset"):
            next(chunks)


def test_the_reader_ends_when_the_staging_stops_early():
    pulled: list[int] = []
    chunks = _ReadAhead(counted(100, pulled), 3, PREFIX, StagingCounts())
    next(chunks)
    chunks.close()
    assert not [thread for thread in threading.enumerate() if thread.name == "staging-reader"]
    assert len(pulled) <= 6


def test_the_first_chunk_is_read_before_the_staging_asks_for_it():
    pulled: list[int] = []
    with _ReadAhead(counted(10, pulled), 3, PREFIX, StagingCounts()) as chunks:
        wait_until(lambda: len(pulled) >= 3)  # read while the caller still waits (for an archive copy)
        time.sleep(0.05)
        assert pulled == [1, 2, 3]
        assert [record.record_no for record in next(chunks).records] == [1, 2, 3]
    assert not [thread for thread in threading.enumerate() if thread.name == "staging-reader"]


def test_closing_counts_the_readers_time_once():
    counts = StagingCounts()
    chunks = _ReadAhead(counted(10, []), 3, PREFIX, counts)
    assert len(list(chunks)) == 4
    chunks.close()
    spent = counts.parse_seconds
    chunks.close()
    assert spent > 0
    assert counts.parse_seconds == spent


def test_the_gil_changes_hands_often_while_a_reader_runs_and_as_before_once_every_reader_stopped():
    before = sys.getswitchinterval()
    assert before > READER_SWITCH_INTERVAL  # Python's default: no reader of an earlier test is left open
    first = _ReadAhead(counted(10, []), 3, PREFIX, StagingCounts())
    second = _ReadAhead(counted(10, []), 3, PREFIX, StagingCounts())
    assert sys.getswitchinterval() == min(before, READER_SWITCH_INTERVAL) < 0.005
    first.close()
    assert sys.getswitchinterval() == min(before, READER_SWITCH_INTERVAL)  # the second still reads
    second.close()
    assert sys.getswitchinterval() == before


def test_a_reader_that_cannot_start_leaves_the_switch_interval_as_it_was(monkeypatch):
    before = sys.getswitchinterval()

    def refuse(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="new thread"):
        _ReadAhead(counted(10, []), 3, PREFIX, StagingCounts())
    assert sys.getswitchinterval() == before


def test_next_after_close_ends_the_chunks_instead_of_waiting():
    chunks = _ReadAhead(counted(10, []), 3, PREFIX, StagingCounts())
    next(chunks)
    chunks.close()
    assert list(chunks) == []

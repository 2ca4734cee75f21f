"""Chunks of a batch are read lazily (parsing overlaps COPY) and kept whole for a retried transaction."""

from etl_assets.transform.records import ParsedRecord
from etl_assets.warehouse.staging import _chunks


def counted(total: int, pulled: list[int]):
    for number in range(1, total + 1):
        pulled.append(number)
        yield ParsedRecord(number, {}, "{}")


def test_chunks_cover_every_record_once_and_read_only_what_is_staged():
    pulled: list[int] = []
    chunks = _chunks(counted(7, pulled), 3)
    first = next(chunks)
    assert pulled == [1]  # only the record that proved the chunk is not empty
    assert [record.record_no for record in first] == [1, 2, 3]
    assert pulled == [1, 2, 3]
    assert [[record.record_no for record in chunk] for chunk in chunks] == [[4, 5, 6], [7]]


def test_a_chunk_cut_short_gives_all_its_records_to_the_retry():
    pulled: list[int] = []
    chunk = next(_chunks(counted(5, pulled), 4))
    reading = iter(chunk)
    next(reading), next(reading)  # the first attempt failed after two records
    assert [record.record_no for record in chunk.records()] == [1, 2, 3, 4]
    assert pulled == [1, 2, 3, 4]  # the fifth record belongs to the next chunk and was not read

import bz2
import gzip
import io
import zlib
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from etl_assets.transform.records import (
    Compression,
    FileFormat,
    FileShape,
    ParsedRecord,
    RejectedRecord,
    UnsupportedFile,
    compression_of,
    detect_format,
    iter_records,
    read_file,
)

NUL_REASON = "NUL character (PostgreSQL text cannot hold it)"


def records(data: bytes, fmt: FileFormat) -> list[ParsedRecord | RejectedRecord]:
    return list(iter_records(io.BytesIO(data), fmt))


def read(data: bytes, name: str = "events.jsonl", **options) -> list[ParsedRecord | RejectedRecord]:
    return list(read_file(io.BytesIO(data), name, **options))


def jsonl(data: bytes) -> list[ParsedRecord | RejectedRecord]:
    return records(data, FileFormat.JSONL)


def csv_rows(data: bytes) -> list[ParsedRecord | RejectedRecord]:
    return records(data, FileFormat.CSV)


def only_rejected(items: list[ParsedRecord | RejectedRecord]) -> RejectedRecord:
    assert len(items) == 1
    assert isinstance(items[0], RejectedRecord)
    return items[0]


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def payloads(items: list[ParsedRecord | RejectedRecord]) -> list[dict]:
    assert all(isinstance(item, ParsedRecord) for item in items), items
    return [item.payload for item in items]


JSONL = FileShape(FileFormat.JSONL)
CSV = FileShape(FileFormat.CSV)


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("landing/2025/08/01/events.jsonl", b'{"id": "e1"}\n', JSONL),
        ("events.ndjson", b'{"id": "e1"}\n', JSONL),
        ("events.json", b'{"id": "e1"}\n{"id": "e2"}\n', JSONL),
        ("events.csv", b"id,type\ne1,purchase\n", CSV),
        ("events.CSV", b"id,type\n", CSV),
        ("events.csv", b'\xef\xbb\xbf  {"id": "e1"}\n', JSONL),
        ("events.jsonl", b"id,type\ne1,purchase\n", CSV),
        ("events.csv.gz", b"id,type\ne1,purchase\n", CSV),
        ("export-0001", b'\xef\xbb\xbf\n {"id": "e1"}\n', JSONL),
        ("export-0001", b"id,type\n", CSV),
        ("events.json", b'[{"id": "e1"}]', FileShape(FileFormat.JSON_ARRAY)),
        ("events.csv", b'\n  [\n  {"id": "e1"}', FileShape(FileFormat.JSON_ARRAY)),
        ("export.json", b'{"events": [{"id": "e1"}]}', FileShape(FileFormat.JSON_DOCUMENT, "events")),
        ("export.json", b'{\n  "data": [\n    {"id": "e1"},', FileShape(FileFormat.JSON_DOCUMENT, "data")),
        ("export.json", b'{"meta": {"page": 1},\n "records": [', FileShape(FileFormat.JSON_DOCUMENT, "records")),
        ("export.json", b'{"batch": [{"id": "e1"}], "sentAt": "x"}\n', FileShape(FileFormat.JSON_DOCUMENT, "batch")),
        ("export.json", b'{"id": "e1", "data": [1]}\n{"id": "e2"}\n', JSONL),
        ("export.json", b'{"events": "not an array"}', JSONL),
        ("part-0000.snappy.parquet", b"PAR1\x15\x04", FileShape(FileFormat.PARQUET)),
        ("events.csv", b"PAR1\x15\x04", FileShape(FileFormat.PARQUET)),
    ],
)
def test_detect_format(name: str, head: bytes, expected: FileShape):
    assert detect_format(name, head) == expected


def test_the_keys_of_a_wrapped_document_are_a_setting():
    head = b'{"items": [{"id": "e1"}]}'
    assert detect_format("export.json", head) == JSONL
    assert detect_format("export.json", head, ("items",)) == FileShape(FileFormat.JSON_DOCUMENT, "items")


def test_a_jsonl_whose_first_line_is_broken_json_without_commas_stays_jsonl():
    assert detect_format("events.jsonl", b"not json\n") == JSONL


@pytest.mark.parametrize(
    ("name", "head"),
    [("events.zip", b"PK\x03\x04rest"), ("events.avro", b"Obj\x01rest"), ("events.xz", b"\xfd7zXZ\x00rest")],
)
def test_detect_format_refuses_what_it_cannot_read(name: str, head: bytes):
    with pytest.raises(UnsupportedFile) as raised:
        detect_format(name, head)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (gzip.compress(b"x", mtime=0), Compression.GZIP),
        (bz2.compress(b"x"), Compression.BZIP2),
        (zstd(b"x"), Compression.ZSTD),
        (b"BZh is a word", None),
        (b'{"id": "e1"}', None),
        (b"", None),
    ],
)
def test_compression_is_found_from_the_magic_bytes(data: bytes, expected: Compression | None):
    assert compression_of(data) is expected


def test_jsonl_bom_crlf_and_blank_lines():
    data = b'\xef\xbb\xbf{"id": "e1"}\r\n\r\n   \n{"id": "e2", "n": 1}\r\n\n{"id": "e3"}'
    items = jsonl(data)
    assert [(item.record_no, item.payload) for item in items] == [
        (1, {"id": "e1"}),
        (4, {"id": "e2", "n": 1}),
        (6, {"id": "e3"}),
    ]
    assert all(isinstance(item, ParsedRecord) for item in items)
    assert [item.json_text for item in items] == ['{"id": "e1"}', '{"id": "e2", "n": 1}', '{"id": "e3"}']


def test_json_text_keeps_the_original_text():
    line = '{"b": 1.50, "a": "café"}'
    (item,) = jsonl(line.encode() + b"\n")
    assert isinstance(item, ParsedRecord)
    assert item.json_text == line
    assert item.payload == {"b": 1.5, "a": "café"}


def test_broken_json_is_rejected_with_the_column_and_the_bytes():
    items = jsonl(b'{"id": "e1"}\n{"id": "e2",, }\n{"id": "e3"}\n')
    assert [type(item) for item in items] == [ParsedRecord, RejectedRecord, ParsedRecord]
    rejected = items[1]
    assert isinstance(rejected, RejectedRecord)
    assert rejected.record_no == 2
    assert rejected.reason.startswith("invalid JSON: ")
    assert "column 13" in rejected.reason
    assert rejected.raw == b'{"id": "e2",, }'


def test_invalid_utf8_is_rejected_with_its_byte_position():
    line = b'{"id": "e\xff1"}'
    rejected = only_rejected(jsonl(line + b"\n"))
    assert rejected.reason == "invalid UTF-8 at byte 10"
    assert rejected.raw == line


@pytest.mark.parametrize("line", [b'{"id": "e\x001"}', b'{"id": "e\\u00001"}', b'{"id": "e1", "note": "\\\\\\u0000"}'])
def test_nul_characters_are_rejected(line: bytes):
    rejected = only_rejected(jsonl(line + b"\n"))
    assert rejected.reason == NUL_REASON
    assert rejected.raw == line


def test_an_escaped_backslash_before_u0000_is_not_a_nul():
    (item,) = jsonl(b'{"id": "e1", "path": "C:\\\\u0000"}\n')
    assert isinstance(item, ParsedRecord)
    assert item.payload["path"] == "C:\\u0000"


@pytest.mark.parametrize(
    ("line", "kind"),
    [(b"[1, 2]", "array"), (b'"e1"', "string"), (b"12", "number"), (b"null", "null"), (b"true", "boolean")],
)
def test_a_value_that_is_not_an_object_is_rejected(line: bytes, kind: str):
    rejected = only_rejected(jsonl(line + b"\n"))
    assert rejected.reason == f"record is a JSON {kind}, not an object"


def test_too_deep_nesting_is_rejected_with_orjsons_reason():
    line = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    rejected = only_rejected(jsonl(line + b"\n"))
    assert rejected.reason.startswith("invalid JSON: ")
    assert "depth" in rejected.reason


def test_json_nested_1000_deep_is_read_and_beyond_orjsons_1024_levels_is_rejected():
    (deep,) = jsonl(b'{"id": "e1", "tree": ' + b"[" * 1000 + b"]" * 1000 + b"}\n")
    assert isinstance(deep, ParsedRecord)
    assert deep.json_text.count("[") == 1000
    too_deep = only_rejected(jsonl(b'{"id": "e1", "tree": ' + b"[" * 1024 + b"]" * 1024 + b"}\n"))
    assert too_deep.reason.startswith("invalid JSON: depth limit exceeded")


def test_a_lone_surrogate_escape_is_rejected_as_invalid_json():
    """PostgreSQL's jsonb refuses ``\\ud800`` without its pair, as orjson does: the line never reaches COPY."""
    rejected = only_rejected(jsonl(b'{"id": "e1", "name": "\\ud800"}\n'))
    assert rejected.reason.startswith("invalid JSON: no low surrogate in string")


def test_a_csv_field_of_ten_megabytes_is_read():
    big = "x" * (10 * 1024 * 1024)
    items = csv_rows(b"id,blob\r\ne1," + big.encode() + b'\r\ne2,"small"\r\n')
    assert [(item.record_no, type(item)) for item in items] == [(2, ParsedRecord), (3, ParsedRecord)]
    assert items[0].payload == {"id": "e1", "blob": big}


def test_a_line_of_ten_megabytes_is_read():
    big = "x" * (10 * 1024 * 1024)
    data = orjson.dumps({"id": "e1", "blob": big}) + b"\n" + b'{"id": "e2"}\n'
    items = jsonl(data)
    assert [item.record_no for item in items] == [1, 2]
    assert isinstance(items[0], ParsedRecord)
    assert items[0].payload["blob"] == big


def test_records_are_read_lazily_from_the_stream():
    stream = io.BytesIO(b'{"id": "e1", "pad": "' + b"x" * 100 + b'"}\n' * 200_000)
    first = next(iter_records(stream, FileFormat.JSONL))
    assert isinstance(first, ParsedRecord)
    assert stream.tell() < 1024 * 1024


def test_empty_content_yields_nothing_from_the_shape_readers():
    assert jsonl(b"") == []
    assert jsonl(b"\n\n  \r\n") == []
    assert csv_rows(b"") == []
    assert csv_rows(b"id,type,timestamp\r\n") == []


def test_a_file_of_no_bytes_yields_nothing():
    assert read(b"") == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\n\n  \r\n", "no records: the file holds only blank lines"),
        (b"id,type,timestamp\r\n", "no records: the CSV file has a header and no rows"),
        (b" [ ] ", "no records: the JSON array is empty"),
        (b'{"events": []}', "no records: the JSON document's array is empty"),
        (gzip.compress(b"", mtime=0), "no records: the gzip stream holds no bytes"),
        (zstd(gzip.compress(b"", mtime=0)), "no records: the gzip inside zstd stream holds no bytes"),
    ],
)
def test_a_file_with_bytes_and_no_record_says_so(data: bytes, reason: str):
    rejected = only_rejected(read(data))
    assert (rejected.record_no, rejected.reason, rejected.raw) == (0, reason, b"")


def test_csv_quoted_commas_and_newlines_keep_line_numbers_right():
    data = (
        b"\xef\xbb\xbf id , type ,note\r\n"
        b'e1,purchase,"red, large"\r\n'
        b'e2,page_view,"line one\r\nline two\r\nline three"\r\n'
        b"e3,add_to_cart,plain\r\n"
    )
    items = csv_rows(data)
    assert [(item.record_no, item.payload) for item in items] == [
        (2, {"id": "e1", "type": "purchase", "note": "red, large"}),
        (3, {"id": "e2", "type": "page_view", "note": "line one\r\nline two\r\nline three"}),
        (6, {"id": "e3", "type": "add_to_cart", "note": "plain"}),
    ]
    assert all(isinstance(item, ParsedRecord) for item in items)
    assert orjson.loads(items[0].json_text) == items[0].payload


def test_csv_empty_fields_are_left_out_and_empty_rows_skipped():
    items = csv_rows(b"id,type,user_id,price\ne1,page_view,,\n\n,,,\ne2,purchase,u1, 0 \n")
    assert [(item.record_no, item.payload) for item in items] == [
        (2, {"id": "e1", "type": "page_view"}),
        (5, {"id": "e2", "type": "purchase", "user_id": "u1", "price": " 0 "}),
    ]


def test_csv_row_with_the_wrong_column_count_is_rejected():
    items = csv_rows(b"id,type,user_id,price,currency\ne1,purchase,u1\ne2,page_view,u2,,\n")
    rejected = items[0]
    assert isinstance(rejected, RejectedRecord)
    assert (rejected.record_no, rejected.reason) == (2, "CSV row has 3 columns, the header has 5")
    assert rejected.raw == b"e1,purchase,u1"
    assert isinstance(items[1], ParsedRecord)
    assert items[1].record_no == 3


def test_csv_invalid_utf8_and_nul_fields_are_rejected_with_their_bytes():
    items = csv_rows(b'id,name\ne1,caf\xe9\ne2,"a\x00b"\ne3,ok\n')
    assert [type(item) for item in items] == [RejectedRecord, RejectedRecord, ParsedRecord]
    bad_utf8, nul = items[0], items[1]
    assert isinstance(bad_utf8, RejectedRecord)
    assert isinstance(nul, RejectedRecord)
    assert bad_utf8.reason.startswith("invalid UTF-8")
    assert bad_utf8.raw == b"e1,caf\xe9"
    assert nul.reason == NUL_REASON


def test_csv_header_repeating_a_column_rejects_the_rows_instead_of_losing_values():
    items = csv_rows(b"id,price,price\ne1,1,2\n")
    rejected = only_rejected(items)
    assert rejected.record_no == 2
    assert "price" in rejected.reason


def test_a_reason_naming_a_huge_column_shows_it_cut_short():
    name = "k" * 100_000
    repeated = only_rejected(csv_rows(f"{name},{name}\ne1,e2\n".encode()))
    assert repeated.reason.startswith("CSV header repeats the column 'kkk") and len(repeated.reason) < 80
    bad_utf8 = only_rejected(csv_rows(f"id,{name}\ne1,caf".encode() + b"\xe9\n"))
    assert bad_utf8.reason.startswith("invalid UTF-8 in column 'kkk") and len(bad_utf8.reason) < 80


def test_csv_iteration_leaves_the_callers_stream_open():
    stream = io.BytesIO(b"id\ne1\n")
    assert len(list(iter_records(stream, FileFormat.CSV))) == 1
    assert not stream.closed


def test_gzip_jsonl_and_gzip_csv():
    jsonl_items = read(gzip.compress(b'{"id": "e1"}\n\n{"id": "e2"}\n'), "events.csv")
    assert [(item.record_no, item.payload) for item in jsonl_items] == [(1, {"id": "e1"}), (3, {"id": "e2"})]
    csv_items = read(gzip.compress(b"id,type\ne1,purchase\ne2,page_view\n"), "events.json")
    assert [(item.record_no, item.payload) for item in csv_items] == [
        (2, {"id": "e1", "type": "purchase"}),
        (3, {"id": "e2", "type": "page_view"}),
    ]


LINES = b'{"id": "e1"}\n{"id": "e2"}\n{"id": "e3"}\n'


@pytest.mark.parametrize(
    "packed",
    [
        pytest.param(gzip.compress(LINES), id="gzip"),
        pytest.param(gzip.compress(LINES[:13]) + gzip.compress(LINES[13:]), id="gzip-members"),
        pytest.param(gzip.compress(LINES) + b"\x00" * 512, id="gzip-zero-padding"),
        pytest.param(bz2.compress(LINES), id="bzip2"),
        pytest.param(bz2.compress(LINES[:13]) + bz2.compress(LINES[13:]), id="bzip2-streams"),
        pytest.param(zstd(LINES), id="zstd"),
        pytest.param(zstd(LINES[:13]) + zstd(LINES[13:]), id="zstd-frames"),
        pytest.param(gzip.compress(gzip.compress(LINES)), id="gzip-in-gzip"),
        pytest.param(zstd(bz2.compress(gzip.compress(LINES))), id="three-layers"),
    ],
)
def test_every_compression_is_read_from_its_bytes_whatever_the_name(packed: bytes):
    for name in ("events.jsonl", "events.jsonl.gz", "export-0001"):
        items = read(packed, name)
        assert [(item.record_no, item.payload) for item in items] == [
            (1, {"id": "e1"}),
            (2, {"id": "e2"}),
            (3, {"id": "e3"}),
        ]


def test_compression_deeper_than_the_limit_is_one_rejection_that_says_so():
    packed = gzip.compress(zstd(gzip.compress(gzip.compress(LINES))))
    rejected = only_rejected(read(packed))
    assert rejected.record_no == 0
    assert rejected.reason == (
        "compressed more than 3 levels deep (gzip inside gzip inside zstd inside gzip): decompress it before dropping it"
    )
    assert payloads(read(packed, max_depth=4)) == [{"id": "e1"}, {"id": "e2"}, {"id": "e3"}]


def lines_of_noise(count: int) -> bytes:
    """Lines that do not compress away, so a cut in the compressed stream lands in the middle of the file."""
    return b"".join(
        orjson.dumps({"id": f"e{number}", "noise": zlib.crc32(bytes(number)) * number}) + b"\n"
        for number in range(count)
    )


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("pack", "kind"),
    [
        pytest.param(lambda plain: half(gzip.compress(plain)), "gzip", id="gzip"),
        pytest.param(lambda plain: half(zstd(plain)), "zstd", id="zstd"),
        pytest.param(lambda plain: gzip.compress(half(zstd(plain))), "zstd", id="cut-zstd-in-whole-gzip"),
    ],
)
@pytest.mark.parametrize("fmt", [FileFormat.JSONL, FileFormat.CSV])
def test_a_truncated_stream_yields_the_whole_records_before_the_cut_then_one_rejection(pack, kind, fmt):
    if fmt is FileFormat.JSONL:
        plain = lines_of_noise(20_000)
    else:
        plain = b"id,noise\n" + b"".join(f"e{n},{zlib.crc32(bytes(n)) * n}\n".encode() for n in range(20_000))
    *parsed, last = read(pack(plain))
    assert isinstance(last, RejectedRecord)
    assert last.reason == f"file truncated: the {kind} stream ends early"
    assert last.raw == b""
    assert 100 < len(parsed) < 20_000
    assert [item.payload["id"] for item in parsed] == [f"e{n}" for n in range(len(parsed))]
    numbers = [item.record_no for item in parsed]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert last.record_no == numbers[-1] + 1


def test_a_gzip_cut_inside_its_header_is_a_truncation():
    rejected = only_rejected(read(gzip.compress(b'{"id": "e1"}\n')[:6]))
    assert (rejected.record_no, rejected.reason) == (1, "file truncated: the gzip stream ends early")


def test_bytes_after_the_last_member_that_are_not_a_member_are_rejected_after_the_records():
    items = read(gzip.compress(b'{"id": "e1"}\n') + b"trailing")
    assert isinstance(items[0], ParsedRecord)
    assert (items[1].record_no, items[1].reason) == (
        2,
        "not a valid gzip stream: bytes that are not gzip follow its end",
    )


def test_corrupt_bzip2_is_rejected_not_raised():
    packed = bytearray(bz2.compress(lines_of_noise(100)))
    packed[40] ^= 0xFF
    rejected = only_rejected(read(bytes(packed)))
    assert rejected.reason.startswith("corrupt bzip2 stream: ")


# -- JSON arrays and documents ------------------------------------------------------------------


def test_a_json_array_of_events_is_read_item_by_item_with_numbers_exact():
    data = b'[\n {"id": "e1", "price": 1.50, "big": 123456789012345678901234567890},\n {"id": "e2"}, 7, "x"\n]\n'
    items = read(data, "export.json")
    assert [type(item) for item in items] == [ParsedRecord, ParsedRecord, RejectedRecord, RejectedRecord]
    assert items[0].json_text == '{"id":"e1","price":1.50,"big":123456789012345678901234567890}'
    assert items[0].payload["id"] == "e1"
    assert (items[2].record_no, items[2].reason, items[2].raw) == (3, "record is a JSON number, not an object", b"7")
    assert items[3].reason == "record is a JSON string, not an object"


def test_a_broken_json_array_keeps_the_items_before_the_damage():
    items = read(b'[{"id": "e1"}, {"id": "e2"}, {"id": oops}]')
    assert payloads(items[:2]) == [{"id": "e1"}, {"id": "e2"}]
    assert items[2].record_no == 3
    assert items[2].reason.startswith("invalid JSON after record 2: ")
    assert "\n" not in items[2].reason


def test_a_json_array_item_with_a_nul_is_rejected():
    items = read(b'[{"id": "e1", "note": "a\\u0000b"}, {"id": "e2"}]')
    assert (items[0].record_no, items[0].reason) == (1, NUL_REASON)
    assert payloads(items[1:]) == [{"id": "e2"}]


def test_a_json_array_is_streamed_not_loaded_whole():
    stream = io.BytesIO(b"[" + b",".join([b'{"id": "e1", "pad": "' + b"x" * 100 + b'"}'] * 200_000) + b"]")
    first = next(read_file(stream, "big.json"))
    assert isinstance(first, ParsedRecord)
    assert stream.tell() < 1024 * 1024


@pytest.mark.parametrize(
    "document",
    [
        b'{"events": [{"id": "e1"}, {"id": "e2"}]}',
        b'{\n  "sentAt": "2026-01-01T00:00:00Z",\n  "batch": [\n    {"id": "e1"},\n    {"id": "e2"}\n  ]\n}\n',
        b'{"meta": {"data": [0]}, "records": [{"id": "e1"}, {"id": "e2"}], "next": null}',
    ],
)
def test_a_document_holding_its_events_under_a_key_is_read(document: bytes):
    items = read(document, "export.json")
    assert [(item.record_no, item.payload) for item in items] == [(1, {"id": "e1"}), (2, {"id": "e2"})]


def test_a_wrapped_document_under_a_configured_key_is_read():
    items = read(b'{"items": [{"id": "e1"}]}', "export.json", array_keys=("items",))
    assert payloads(items) == [{"id": "e1"}]


# -- Parquet ------------------------------------------------------------------------------------


def parquet_bytes(table: pa.Table, row_group_size: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_size)
    return sink.getvalue()


def test_a_parquet_file_is_read_row_by_row_across_row_groups():
    table = pa.table(
        {
            "id": [f"e{n}" for n in range(25)],
            "type": ["purchase"] * 25,
            "timestamp": [datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)] * 25,
            "price": pa.array([Decimal("12.50")] * 25, pa.decimal128(10, 2)),
            "tags": [["a", "b"]] * 25,
            "note": [None] * 25,
        }
    )
    items = read(parquet_bytes(table, row_group_size=10), "part-0000.parquet")
    assert [item.record_no for item in items] == list(range(1, 26))
    first = items[0]
    assert isinstance(first, ParsedRecord)
    assert orjson.loads(first.json_text) == {
        "id": "e0",
        "type": "purchase",
        "timestamp": "2026-01-02T03:04:05+00:00",
        "price": 12.5,
        "tags": ["a", "b"],
        "note": None,
    }
    assert '"price":12.50' in first.json_text


def test_a_parquet_file_with_no_rows_and_a_broken_one_are_rejections():
    empty = parquet_bytes(pa.table({"id": pa.array([], pa.string())}), row_group_size=10)
    assert only_rejected(read(empty)).reason == "no records: the Parquet file has no rows"
    broken = parquet_bytes(pa.table({"id": ["e1"]}), row_group_size=10)[:-20]
    rejected = only_rejected(read(broken))
    assert rejected.reason.startswith("unreadable Parquet file after row 0: ")


def test_a_compressed_parquet_file_is_refused_with_what_to_do():
    data = gzip.compress(parquet_bytes(pa.table({"id": ["e1"]}), row_group_size=10))
    rejected = only_rejected(read(data, "part.parquet.gz"))
    assert rejected.reason == (
        "unsupported file: a Parquet file inside gzip: Parquet compresses its own pages, drop it uncompressed"
    )

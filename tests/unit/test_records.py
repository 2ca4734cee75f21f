import gzip
import io
import zlib

import orjson
import pytest

from etl_assets.transform.records import (
    FileFormat,
    ParsedRecord,
    RejectedRecord,
    UnsupportedFile,
    detect_format,
    iter_records,
)

NUL_REASON = "NUL character (PostgreSQL text cannot hold it)"


def records(data: bytes, fmt: FileFormat, compressed: bool = False) -> list[ParsedRecord | RejectedRecord]:
    return list(iter_records(io.BytesIO(data), fmt, compressed))


def jsonl(data: bytes) -> list[ParsedRecord | RejectedRecord]:
    return records(data, FileFormat.JSONL)


def csv_rows(data: bytes) -> list[ParsedRecord | RejectedRecord]:
    return records(data, FileFormat.CSV)


def only_rejected(items: list[ParsedRecord | RejectedRecord]) -> RejectedRecord:
    assert len(items) == 1
    assert isinstance(items[0], RejectedRecord)
    return items[0]


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("landing/2025/08/01/events.jsonl", b'{"id": "e1"}\n', (FileFormat.JSONL, False)),
        ("events.ndjson", b'{"id": "e1"}\n', (FileFormat.JSONL, False)),
        ("events.json", b'{"id": "e1"}\n', (FileFormat.JSONL, False)),
        ("events.csv", b"id,type\ne1,purchase\n", (FileFormat.CSV, False)),
        ("events.CSV", b"id,type\n", (FileFormat.CSV, False)),
        ("events.csv", b'\xef\xbb\xbf  {"id": "e1"}\n', (FileFormat.JSONL, False)),
        ("events.jsonl", b"id,type\ne1,purchase\n", (FileFormat.CSV, False)),
        ("events.jsonl", gzip.compress(b'{"id": "e1"}\n'), (FileFormat.JSONL, True)),
        ("events.csv.gz", b"id,type\ne1,purchase\n", (FileFormat.CSV, False)),
        ("events.jsonl.gz", gzip.compress(b'{"id": "e1"}\n'), (FileFormat.JSONL, True)),
        ("events.json.gz", gzip.compress(b"id,type\ne1,purchase\n"), (FileFormat.CSV, True)),
        ("export-0001", b'\xef\xbb\xbf\n {"id": "e1"}\n', (FileFormat.JSONL, False)),
        ("export-0001", b"id,type\n", (FileFormat.CSV, False)),
        ("export-0001.gz", gzip.compress(b'{"id": "e1"}\n'), (FileFormat.JSONL, True)),
        ("export-0001", gzip.compress(b"id,type\n"), (FileFormat.CSV, True)),
    ],
)
def test_detect_format(name: str, head: bytes, expected: tuple[FileFormat, bool]):
    assert detect_format(name, head) == expected


def test_a_jsonl_whose_first_line_is_broken_json_without_commas_stays_jsonl():
    assert detect_format("events.jsonl", b"not json\n") == (FileFormat.JSONL, False)


def test_gzip_head_too_short_to_sniff_trusts_the_name():
    head = gzip.compress(b'{"id": "e1"}\n' * 1000)[:12]
    assert detect_format("events.csv.gz", head) == (FileFormat.CSV, True)


@pytest.mark.parametrize(
    ("name", "head"),
    [
        ("events.zip", b"PK\x03\x04rest"),
        ("events.csv", b"PAR1\x15\x04"),
        ("export-0001", gzip.compress(b'{"id": "e1"}\n' * 1000)[:12]),
    ],
)
def test_detect_format_refuses_what_it_cannot_read(name: str, head: bytes):
    with pytest.raises(UnsupportedFile) as raised:
        detect_format(name, head)
    assert "\n" not in str(raised.value)


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
    first = next(iter_records(stream, FileFormat.JSONL, compressed=False))
    assert isinstance(first, ParsedRecord)
    assert stream.tell() < 1024 * 1024


def test_empty_files_yield_nothing():
    assert jsonl(b"") == []
    assert jsonl(b"\n\n  \r\n") == []
    assert csv_rows(b"") == []
    assert csv_rows(b"id,type,timestamp\r\n") == []
    assert records(gzip.compress(b""), FileFormat.JSONL, compressed=True) == []


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
    assert len(list(iter_records(stream, FileFormat.CSV, compressed=False))) == 1
    assert not stream.closed


def test_gzip_jsonl_and_gzip_csv():
    jsonl_items = records(gzip.compress(b'{"id": "e1"}\n\n{"id": "e2"}\n'), FileFormat.JSONL, compressed=True)
    assert [(item.record_no, item.payload) for item in jsonl_items] == [(1, {"id": "e1"}), (3, {"id": "e2"})]
    csv_items = records(gzip.compress(b"id,type\ne1,purchase\ne2,page_view\n"), FileFormat.CSV, compressed=True)
    assert [(item.record_no, item.payload) for item in csv_items] == [
        (2, {"id": "e1", "type": "purchase"}),
        (3, {"id": "e2", "type": "page_view"}),
    ]


def lines_of_noise(count: int) -> bytes:
    """Lines that do not compress away, so a cut in the gzip stream lands in the middle of the file."""
    return b"".join(
        orjson.dumps({"id": f"e{number}", "noise": zlib.crc32(bytes(number)) * number}) + b"\n"
        for number in range(count)
    )


@pytest.mark.parametrize("fmt", [FileFormat.JSONL, FileFormat.CSV])
def test_truncated_gzip_yields_the_good_records_then_one_rejection(fmt: FileFormat):
    if fmt is FileFormat.JSONL:
        plain = lines_of_noise(20_000)
    else:
        plain = b"id,noise\n" + b"".join(f"e{n},{zlib.crc32(bytes(n)) * n}\n".encode() for n in range(20_000))
    whole = gzip.compress(plain)
    items = records(whole[: len(whole) // 2], fmt, compressed=True)
    *parsed, last = items
    assert isinstance(last, RejectedRecord)
    assert last.reason == "file truncated: the gzip stream ends early"
    assert last.raw == b""
    assert 100 < len(parsed) < 20_000
    assert all(isinstance(item, ParsedRecord) for item in parsed)
    numbers = [item.record_no for item in parsed]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert last.record_no == numbers[-1] + 1


def test_a_gzip_cut_inside_its_header_is_a_truncation():
    rejected = only_rejected(records(gzip.compress(b'{"id": "e1"}\n')[:6], FileFormat.JSONL, compressed=True))
    assert (rejected.record_no, rejected.reason) == (1, "file truncated: the gzip stream ends early")


def test_bytes_that_are_not_gzip_are_rejected_not_raised():
    rejected = only_rejected(records(b'{"id": "e1"}\n', FileFormat.JSONL, compressed=True))
    assert (rejected.record_no, rejected.reason, rejected.raw) == (1, "not a valid gzip stream", b"")

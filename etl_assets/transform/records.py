"""Streaming parse of landing files: one record at a time, so memory stays flat whatever the file size.

A record that cannot be parsed is yielded as a ``RejectedRecord`` with its bytes and a reason, never raised,
so one bad line never stops a file and nothing that arrived is lost.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import reprlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, BinaryIO

import orjson

GZIP_MAGIC = b"\x1f\x8b"
NUL_REASON = "NUL character (PostgreSQL text cannot hold it)"
TRUNCATED_REASON = "file truncated: the gzip stream ends early"
NOT_GZIP_REASON = "not a valid gzip stream"

_UTF8_BOM = codecs.BOM_UTF8
_NUL_ESCAPE = b"\\u0000"
_CSV_FIELD_LIMIT = 256 * 1024 * 1024
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
_JSON_KIND = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
_BINARY_MAGICS = {
    b"PK\x03\x04": "a zip archive",
    b"PAR1": "a Parquet file",
    b"Obj\x01": "an Avro file",
    b"BZh": "a bzip2 stream",
    b"\xfd7zXZ\x00": "an xz stream",
    b"\x28\xb5\x2f\xfd": "a zstd stream",
}


class FileFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


class UnsupportedFile(ValueError):
    """The file is not JSON lines or CSV (or cannot be told apart); the message is one line."""


@dataclass(frozen=True, slots=True)
class ParsedRecord:
    record_no: int
    payload: dict[str, Any]
    json_text: str


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    record_no: int
    reason: str
    raw: bytes


def detect_format(name: str, head: bytes) -> tuple[FileFormat, bool]:
    """Return (format, gzip-compressed) from the object's name and its first bytes.

    Compression is decided by the gzip magic in ``head``, never by the name. The format comes from the name
    (``.jsonl``/``.ndjson``/``.json``/``.csv``, with any ``.gz`` removed), checked against the content: the
    start of ``head`` (decompressed as far as it goes when it is gzip) overrides a name that lies.
    """
    compressed = head[:2] == GZIP_MAGIC
    named = _format_from_name(name)
    text_head = _decompressed_head(head) if compressed else head
    if text_head is None:
        if named is None:
            raise UnsupportedFile(f"cannot tell the format of {name!r}: its name has no .jsonl or .csv extension")
        return named, compressed
    for magic, kind in _BINARY_MAGICS.items():
        if text_head.startswith(magic):
            raise UnsupportedFile(f"{name!r} is {kind}, not JSON lines or CSV")
    sniffed = _sniff(text_head)
    if named is None:
        return (sniffed or FileFormat.CSV), compressed
    if named is FileFormat.CSV and sniffed is FileFormat.JSONL:
        return FileFormat.JSONL, compressed
    if named is FileFormat.JSONL and sniffed is FileFormat.CSV:
        first_line = text_head.lstrip(_UTF8_BOM).lstrip().split(b"\n", 1)[0]
        if b"," in first_line:
            return FileFormat.CSV, compressed
    return named, compressed


def _format_from_name(name: str) -> FileFormat | None:
    base = name.rsplit("/", 1)[-1].lower()
    for suffix in (".gz", ".gzip"):
        base = base.removesuffix(suffix)
    if base.endswith((".jsonl", ".ndjson", ".json")):
        return FileFormat.JSONL
    if base.endswith(".csv"):
        return FileFormat.CSV
    return None


def _decompressed_head(head: bytes) -> bytes | None:
    try:
        text = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(head)
    except zlib.error:
        return None
    return text or None


def _sniff(text_head: bytes) -> FileFormat | None:
    """JSONL when the first non-space character is ``{`` (or ``[``, a JSON line that is not an object)."""
    start = text_head.removeprefix(_UTF8_BOM).lstrip()
    if not start:
        return None
    return FileFormat.JSONL if start[:1] in (b"{", b"[") else FileFormat.CSV


def iter_records(stream: BinaryIO, fmt: FileFormat, compressed: bool) -> Iterator[ParsedRecord | RejectedRecord]:
    """Yield every record of the file in order; ``record_no`` is the 1-based line where the record starts.

    A gzip stream that is truncated or corrupt ends the iteration with one ``RejectedRecord`` (empty ``raw``)
    after the records read before the damage. Errors of the underlying stream itself are not caught.
    """
    source = gzip.GzipFile(fileobj=stream, mode="rb") if compressed else stream
    gzip_errors = _GZIP_ERRORS if compressed else ()
    if fmt is FileFormat.JSONL:
        return _jsonl_records(source, gzip_errors)
    return _csv_records(source, gzip_errors)


def _gzip_rejection(record_no: int, error: BaseException) -> RejectedRecord:
    if isinstance(error, EOFError):
        reason = TRUNCATED_REASON
    elif isinstance(error, gzip.BadGzipFile) and str(error).startswith("Not a gzipped file"):
        reason = NOT_GZIP_REASON
    else:
        reason = f"corrupt gzip stream: {error}"
    return RejectedRecord(record_no, reason, b"")


def _jsonl_records(
    source: BinaryIO | gzip.GzipFile, gzip_errors: tuple[type[BaseException], ...]
) -> Iterator[ParsedRecord | RejectedRecord]:
    line_no = 0
    try:
        for line in source:
            line_no += 1
            if line_no == 1 and line.startswith(_UTF8_BOM):
                line = line[3:]
            body = line.rstrip(b"\r\n")
            if not body or body.isspace():
                continue
            if b"\x00" in body or (_NUL_ESCAPE in body and has_nul_escape(body)):
                yield RejectedRecord(line_no, NUL_REASON, body)
                continue
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError as error:
                yield RejectedRecord(line_no, _json_error_reason(body, error), body)
                continue
            if type(value) is not dict:
                yield RejectedRecord(line_no, f"record is a JSON {_JSON_KIND[type(value)]}, not an object", body)
                continue
            yield ParsedRecord(line_no, value, body.decode())
    except gzip_errors as error:
        yield _gzip_rejection(line_no + 1, error)


def has_nul_escape(body: bytes) -> bool:
    r"""Whether ``\u0000`` is a real escape, not the text ``\\u0000`` (an escaped backslash followed by u0000)."""
    position = body.find(_NUL_ESCAPE)
    while position != -1:
        backslashes = 0
        while position - backslashes - 1 >= 0 and body[position - backslashes - 1] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return True
        position = body.find(_NUL_ESCAPE, position + 1)
    return False


def _json_error_reason(body: bytes, error: orjson.JSONDecodeError) -> str:
    try:
        body.decode()
    except UnicodeDecodeError as bad_utf8:
        return f"invalid UTF-8 at byte {bad_utf8.start + 1}"
    return f"invalid JSON: {error.msg} at column {error.colno}"


def _csv_records(
    source: BinaryIO | gzip.GzipFile, gzip_errors: tuple[type[BaseException], ...]
) -> Iterator[ParsedRecord | RejectedRecord]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        # The default (128 KiB per field) would turn one large field into an error for the rest of the file.
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    text = io.TextIOWrapper(source, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    next_record_line = 1
    try:
        header: list[str] | None = None
        header_problem: str | None = None
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield RejectedRecord(next_record_line, f"invalid CSV: {error}", b"")
                next_record_line = reader.line_num + 1
                continue
            record_no = next_record_line
            next_record_line = reader.line_num + 1
            if not any(field.strip() for field in row):
                continue
            if header is None:
                header = [name.strip() for name in row]
                header_problem = _csv_header_problem(header)
                continue
            if header_problem is not None:
                yield RejectedRecord(record_no, header_problem, _csv_row_bytes(row))
            elif len(row) != len(header):
                reason = f"CSV row has {len(row)} columns, the header has {len(header)}"
                yield RejectedRecord(record_no, reason, _csv_row_bytes(row))
            elif (reason := _csv_row_problem(header, row)) is not None:
                yield RejectedRecord(record_no, reason, _csv_row_bytes(row))
            else:
                payload = {name: value for name, value in zip(header, row, strict=True) if value != ""}
                yield ParsedRecord(record_no, payload, orjson.dumps(payload).decode())
    except gzip_errors as error:
        yield _gzip_rejection(next_record_line, error)
    finally:
        text.detach()


def _is_valid_utf8(value: str) -> bool:
    """Whether ``value`` has no lone surrogate (left by surrogateescape where the bytes were not UTF-8)."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _csv_header_problem(header: list[str]) -> str | None:
    seen: set[str] = set()
    for name in header:
        if "\x00" in name:
            return f"CSV header: {NUL_REASON}"
        if not _is_valid_utf8(name):
            return "CSV header: invalid UTF-8"
        if name in seen and name:
            return f"CSV header repeats the column {reprlib.repr(name)}"
        seen.add(name)
    return None


def _csv_row_problem(header: list[str], row: list[str]) -> str | None:
    for name, value in zip(header, row, strict=True):
        if "\x00" in value:
            return NUL_REASON
        if not _is_valid_utf8(value):
            return f"invalid UTF-8 in column {reprlib.repr(name)}"
        if not name and value.strip():
            return "CSV row has a value in a column the header does not name"
    return None


def _csv_row_bytes(row: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    return buffer.getvalue().encode("utf-8", "surrogateescape")

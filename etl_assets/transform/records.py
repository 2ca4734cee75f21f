"""Streaming parse of landing files: one record at a time, so memory stays flat whatever the file size.

What a file holds is found from its bytes, never its name alone: the compression (gzip, concatenated members
included, bzip2 or zstd, nested up to ``MAX_COMPRESSION_DEPTH`` layers) from its magic bytes, then the shape from
the content: JSON Lines, one JSON array of events, one JSON document holding its events in an array under one of
``DEFAULT_ARRAY_KEYS``, CSV with a header, or Parquet (read a row group at a time). The name only settles a text
file that could be either JSON Lines or CSV.

A record that cannot be parsed is yielded as a ``RejectedRecord`` with its bytes and a reason, never raised, so
one bad line never stops a file and nothing that arrived is lost. A file that cannot be read at all, or holds
bytes but no record, yields one ``RejectedRecord`` (``record_no`` 0) that says why: zero records from a
non-empty file is never a silent outcome.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import io
import reprlib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, BinaryIO, Protocol

import ijson
import orjson
import zstandard

from etl_assets.transform import exact_json

DEFAULT_ARRAY_KEYS = ("events", "data", "records", "batch")
"""Keys under which a single JSON document may hold its array of events (``{"events": […]}``)."""
MAX_COMPRESSION_DEPTH = 3
"""Layers of compression unwrapped (a gzip inside a gzip is two); a file with more is quarantined."""
HEAD_SIZE = 64 * 1024
"""Bytes of (decompressed) content the shape is told from."""
PARQUET_BATCH_ROWS = 10_000

NUL_REASON = "NUL character (PostgreSQL text cannot hold it)"
TRUNCATED_REASON = "file truncated: the gzip stream ends early"

_UTF8_BOM = codecs.BOM_UTF8
_NUL_ESCAPE = b"\\u0000"
_CSV_FIELD_LIMIT = 256 * 1024 * 1024
_INPUT_CHUNK = 64 * 1024
_OUTPUT_LIMIT = 1 << 20
"""Most bytes one step of decompression may produce, so a small input that expands enormously stays bounded."""
_ZSTD_FEED = 1024
"""zstd has no output limit per call: its input is fed this many bytes at a time (at most ~32 MiB out of them)."""
_JSON_KIND = {
    list: "array",
    tuple: "array",
    str: "string",
    int: "number",
    float: "number",
    Decimal: "number",
    bool: "boolean",
    type(None): "null",
}
_BINARY_MAGICS = {
    b"PK\x03\x04": "a zip archive",
    b"Obj\x01": "an Avro file",
    b"\xfd7zXZ\x00": "an xz stream",
    b"ORC": "an ORC file",
}
PARQUET_MAGIC = b"PAR1"


class Compression(StrEnum):
    GZIP = "gzip"
    BZIP2 = "bzip2"
    ZSTD = "zstd"


_COMPRESSION_MAGICS = {
    Compression.GZIP: b"\x1f\x8b",
    Compression.BZIP2: b"BZh",
    Compression.ZSTD: b"\x28\xb5\x2f\xfd",
}


class FileFormat(StrEnum):
    JSONL = "jsonl"
    JSON_ARRAY = "json-array"
    JSON_DOCUMENT = "json-document"
    CSV = "csv"
    PARQUET = "parquet"


@dataclass(frozen=True, slots=True)
class FileShape:
    """How a file's (decompressed) content is read; ``array_key`` names the array of a JSON document."""

    format: FileFormat
    array_key: str | None = None


class UnsupportedFile(ValueError):
    """The file is none of the shapes read here (or cannot be told apart); the message is one line."""


class StreamDamaged(Exception):
    """A compressed stream is truncated or corrupt; ``reason`` is the one line its quarantine row shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


# -- compression ------------------------------------------------------------------------------------


def compression_of(head: bytes) -> Compression | None:
    """The compression whose magic bytes ``head`` starts with (bzip2 also needs its block-size digit)."""
    if head.startswith(_COMPRESSION_MAGICS[Compression.BZIP2]):
        return Compression.BZIP2 if head[3:4] in (b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9") else None
    for kind, magic in _COMPRESSION_MAGICS.items():
        if kind is not Compression.BZIP2 and head.startswith(magic):
            return kind
    return None


class _Member(Protocol):
    """One member (gzip) or frame (zstd) or stream (bzip2) being decompressed."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def needs_input(self) -> bool: ...

    def decompress(self, data: bytes) -> bytes: ...


class _GzipMember:
    def __init__(self) -> None:
        self._decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)

    eof = property(lambda self: self._decoder.eof)
    unused_data = property(lambda self: self._decoder.unused_data + self._decoder.unconsumed_tail)
    needs_input = property(lambda self: not self._decoder.unconsumed_tail)

    def decompress(self, data: bytes) -> bytes:
        return self._decoder.decompress(self._decoder.unconsumed_tail + data, _OUTPUT_LIMIT)


class _Bzip2Member:
    def __init__(self) -> None:
        self._decoder = bz2.BZ2Decompressor()

    eof = property(lambda self: self._decoder.eof)
    unused_data = property(lambda self: self._decoder.unused_data)
    needs_input = property(lambda self: self._decoder.needs_input)

    def decompress(self, data: bytes) -> bytes:
        return self._decoder.decompress(data, _OUTPUT_LIMIT)


class _ZstdFrame:
    def __init__(self) -> None:
        self._decoder = zstandard.ZstdDecompressor().decompressobj()
        self._input = b""
        self._fed = 0

    eof = property(lambda self: self._decoder.eof)
    unused_data = property(lambda self: self._decoder.unused_data + self._input[self._fed :])
    needs_input = property(lambda self: self._fed >= len(self._input))

    def decompress(self, data: bytes) -> bytes:
        if data:
            self._input, self._fed = self._input[self._fed :] + data, 0
        piece = self._input[self._fed : self._fed + _ZSTD_FEED]
        self._fed += len(piece)
        return self._decoder.decompress(piece)


_MEMBERS: dict[Compression, type] = {
    Compression.GZIP: _GzipMember,
    Compression.BZIP2: _Bzip2Member,
    Compression.ZSTD: _ZstdFrame,
}
_CODEC_ERRORS = (zlib.error, OSError, EOFError, ValueError, zstandard.ZstdError)


class _Borrowed(io.RawIOBase):
    """The caller's stream as a raw stream that closing leaves open."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Decompressed(io.RawIOBase):
    """The decompressed bytes of ``source``, member after member (concatenated gzip members, zstd frames, bzip2
    streams), produced as they are read.

    A stream that ends inside a member raises ``StreamDamaged`` (truncated), as do corrupt bytes and bytes after
    the last member that are not another member; the bytes decompressed before the damage are returned first.
    """

    def __init__(self, source: BinaryIO, kind: Compression) -> None:
        self._source = source
        self._kind = kind
        self._magic = _COMPRESSION_MAGICS[kind]
        self._member: _Member | None = None
        self._input = b""
        self._output = bytearray()
        self._finished = False
        self._damage: StreamDamaged | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._output and self._damage is not None:
            raise self._damage
        try:
            while len(self._output) < len(buffer) and not self._finished:
                self._step()
        except StreamDamaged as damage:
            self._finished, self._damage = True, damage
            if not self._output:
                raise
        count = min(len(buffer), len(self._output))
        buffer[:count] = self._output[:count]
        del self._output[:count]
        return count

    def _step(self) -> None:
        member = self._member
        if member is not None and not member.needs_input:
            self._decompress(member, b"")
            return
        if not self._input:
            self._input = self._source.read(_INPUT_CHUNK)
            if not self._input:
                if member is not None:
                    raise StreamDamaged(f"file truncated: the {self._kind} stream ends early")
                self._finished = True
                return
        if member is None:
            member = self._next_member()
            if member is None:
                return
        data, self._input = self._input, b""
        self._decompress(member, data)

    def _next_member(self) -> _Member | None:
        while len(self._input) < len(self._magic) and (more := self._source.read(_INPUT_CHUNK)):
            self._input += more
        if not self._input.strip(b"\x00"):
            self._input = b""  # zero padding after the last member (tape and block devices write it)
            return None
        if not self._input.startswith(self._magic):
            raise StreamDamaged(f"not a valid {self._kind} stream: bytes that are not {self._kind} follow its end")
        self._member = _MEMBERS[self._kind]()
        return self._member

    def _decompress(self, member: _Member, data: bytes) -> None:
        try:
            self._output += member.decompress(data)
        except _CODEC_ERRORS as error:
            raise StreamDamaged(f"corrupt {self._kind} stream: {_first_line(error)}") from None
        if member.eof:
            self._input = member.unused_data + self._input
            self._member = None


_ERROR_TEXT_MAX = 100


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, cut to ``_ERROR_TEXT_MAX`` characters (ijson's may be bytes)."""
    message = error.args[0] if len(error.args) == 1 else str(error)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    text = str(message).strip()
    line = text.splitlines()[0].strip() if text else type(error).__name__
    return line if len(line) <= _ERROR_TEXT_MAX else line[: _ERROR_TEXT_MAX - 1] + "…"


# -- shapes -----------------------------------------------------------------------------------------


def detect_format(name: str, head: bytes, array_keys: Sequence[str] = DEFAULT_ARRAY_KEYS) -> FileShape:
    """The shape of a file from the first bytes of its (decompressed) content, and its name where the content
    could be JSON Lines or CSV.

    ``[`` starts a JSON array; ``{`` starts JSON Lines, or one JSON document when the file is a single object
    whose array of events sits under one of ``array_keys``; ``PAR1`` starts Parquet. Other text is CSV, unless the
    name says JSON Lines and the first line has no comma (it is then broken JSON, and each line says so).
    """
    if head.startswith(PARQUET_MAGIC):
        return FileShape(FileFormat.PARQUET)
    for magic, kind in _BINARY_MAGICS.items():
        if head.startswith(magic):
            raise UnsupportedFile(f"{name!r} is {kind}, not JSON, CSV or Parquet")
    start = head.removeprefix(_UTF8_BOM).lstrip()
    named = _format_from_name(name)
    if not start:
        return FileShape(named or FileFormat.JSONL)
    if start[:1] == b"[":
        return FileShape(FileFormat.JSON_ARRAY)
    if start[:1] == b"{":
        key = _array_key(start, array_keys)
        return FileShape(FileFormat.JSON_DOCUMENT, key) if key else FileShape(FileFormat.JSONL)
    if named is FileFormat.JSONL and b"," not in start.split(b"\n", 1)[0]:
        return FileShape(FileFormat.JSONL)
    return FileShape(FileFormat.CSV)


def _format_from_name(name: str) -> FileFormat | None:
    base = name.rsplit("/", 1)[-1].lower()
    for suffix in (".gz", ".gzip", ".bz2", ".zst", ".zstd"):
        base = base.removesuffix(suffix)
    if base.endswith((".jsonl", ".ndjson", ".json")):
        return FileFormat.JSONL
    if base.endswith(".csv"):
        return FileFormat.CSV
    return None


def _array_key(start: bytes, array_keys: Sequence[str]) -> str | None:
    """The key of ``array_keys`` under which a file that is one JSON object holds an array, if it is one.

    A first line that is a whole object followed by more lines is JSON Lines. Otherwise (the object spans lines,
    or is longer than the head) its top-level keys are read as far as the head goes.
    """
    first_line, _, rest = start.partition(b"\n")
    try:
        value = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict):
        if rest.strip():
            return None
        return next((key for key, item in value.items() if key in array_keys and isinstance(item, list)), None)
    pending: str | None = None
    try:
        for prefix, event, item in ijson.parse(io.BytesIO(start)):
            if prefix == "" and event == "map_key":
                pending = item
            elif pending is not None and prefix == pending:
                if event == "start_array" and pending in array_keys:
                    return pending
                pending = None
    except ijson.JSONError:
        pass
    return None


# -- reading ----------------------------------------------------------------------------------------


def read_file(
    stream: BinaryIO,
    name: str,
    *,
    array_keys: Sequence[str] = DEFAULT_ARRAY_KEYS,
    max_depth: int = MAX_COMPRESSION_DEPTH,
) -> Iterator[ParsedRecord | RejectedRecord]:
    """Every record of a landing file, whatever its compression and shape (see the module's docstring).

    ``stream`` is the file as stored; it is read forward only, except a Parquet file (seekable, uncompressed).
    It is left open.
    """
    layers: list[Compression] = []
    buffered: io.BufferedReader[io.RawIOBase] = io.BufferedReader(_Borrowed(stream), _INPUT_CHUNK)
    try:
        head = buffered.peek(HEAD_SIZE)[:HEAD_SIZE]
        while (kind := compression_of(head)) is not None:
            if len(layers) == max_depth:
                yield _file_rejection(
                    f"compressed more than {max_depth} levels deep ({_layers_text([*layers, kind])}): "
                    "decompress it before dropping it"
                )
                return
            layers.append(kind)
            buffered = io.BufferedReader(_Decompressed(buffered, kind), _INPUT_CHUNK)
            head = buffered.peek(HEAD_SIZE)[:HEAD_SIZE]
    except StreamDamaged as damage:
        yield RejectedRecord(1, damage.reason, b"")
        return
    if not head:
        if layers:
            yield _file_rejection(f"no records: the {_layers_text(layers)} stream holds no bytes")
        return
    try:
        shape = detect_format(name, head, array_keys)
    except UnsupportedFile as error:
        yield _file_rejection(f"unsupported file: {error}")
        return
    if shape.format is FileFormat.PARQUET:
        if layers:
            yield _file_rejection(
                f"unsupported file: a Parquet file inside {_layers_text(layers)}: Parquet compresses its own pages, "
                "drop it uncompressed"
            )
            return
        stream.seek(0)
        content = stream
    else:
        content = buffered
    count = 0
    for record in iter_records(content, shape):
        count += 1
        yield record
    if count == 0:
        yield _file_rejection(f"no records: {_EMPTY[shape.format]}")


_EMPTY = {
    FileFormat.JSONL: "the file holds only blank lines",
    FileFormat.JSON_ARRAY: "the JSON array is empty",
    FileFormat.JSON_DOCUMENT: "the JSON document's array is empty",
    FileFormat.CSV: "the CSV file has a header and no rows",
    FileFormat.PARQUET: "the Parquet file has no rows",
}


def _layers_text(layers: list[Compression]) -> str:
    return " inside ".join(reversed(layers))


def _file_rejection(reason: str) -> RejectedRecord:
    return RejectedRecord(0, reason, b"")


def iter_records(stream: BinaryIO, shape: FileShape | FileFormat) -> Iterator[ParsedRecord | RejectedRecord]:
    """Yield every record of decompressed content in order.

    ``record_no`` is the 1-based line where the record starts (JSON Lines, CSV) or its 1-based position (a JSON
    array, a Parquet file). A compressed stream that is damaged ends the iteration with one ``RejectedRecord``
    (empty ``raw``) after the records read before the damage. Errors of the underlying stream itself are not caught.
    """
    if isinstance(shape, FileFormat):
        shape = FileShape(shape)
    match shape.format:
        case FileFormat.JSONL:
            return _jsonl_records(stream)
        case FileFormat.CSV:
            return _csv_records(stream)
        case FileFormat.JSON_ARRAY:
            return _array_records(stream, "item")
        case FileFormat.JSON_DOCUMENT:
            return _array_records(stream, f"{shape.array_key}.item")
        case FileFormat.PARQUET:
            return _parquet_records(stream)


def _jsonl_records(source: BinaryIO) -> Iterator[ParsedRecord | RejectedRecord]:
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
                value = exact_json.loads(body)
            except orjson.JSONDecodeError as error:
                yield RejectedRecord(line_no, _json_error_reason(body, error), body)
                continue
            if type(value) is not dict:
                yield RejectedRecord(line_no, f"record is a JSON {_JSON_KIND[type(value)]}, not an object", body)
                continue
            yield ParsedRecord(line_no, value, body.decode())
    except StreamDamaged as damage:
        yield RejectedRecord(line_no + 1, damage.reason, b"")


def _array_records(source: BinaryIO, prefix: str) -> Iterator[ParsedRecord | RejectedRecord]:
    """The items of a JSON array, streamed (``ijson``): an item is in memory only while it is yielded. Numbers keep
    every digit (``Decimal``, written back as its digits). Broken JSON ends the file with one rejection."""
    position = 0
    try:
        for item in ijson.items(source, prefix):
            position += 1
            yield _record_of_value(position, item)
    except StreamDamaged as damage:
        yield RejectedRecord(position + 1, damage.reason, b"")
    except ijson.JSONError as error:
        yield RejectedRecord(position + 1, f"invalid JSON after record {position}: {_first_line(error)}", b"")


def _parquet_records(source: BinaryIO) -> Iterator[ParsedRecord | RejectedRecord]:
    """The rows of a Parquet file, a batch of ``PARQUET_BATCH_ROWS`` at a time, row group after row group."""
    import pyarrow  # imported here: a large library that only Parquet files need
    import pyarrow.parquet

    position = 0
    try:
        parquet = pyarrow.parquet.ParquetFile(source)
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                position += 1
                yield _record_of_value(position, row)
    except (pyarrow.ArrowException, OSError) as error:
        yield RejectedRecord(position + 1, f"unreadable Parquet file after row {position}: {_first_line(error)}", b"")


def _record_of_value(record_no: int, value: Any) -> ParsedRecord | RejectedRecord:
    """A record from a value a JSON array or a Parquet row held, as exact JSON text."""
    try:
        text = _dumps(value)
    except (TypeError, UnicodeDecodeError) as error:
        return RejectedRecord(record_no, f"record holds a value JSON cannot: {_first_line(error)}", b"")
    if type(value) is not dict:
        kind = _JSON_KIND.get(type(value), type(value).__name__)
        return RejectedRecord(record_no, f"record is a JSON {kind}, not an object", text)
    if has_nul_escape(text):
        return RejectedRecord(record_no, NUL_REASON, text)
    return ParsedRecord(record_no, exact_json.loads(text), text.decode())


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=_json_value, option=orjson.OPT_NAIVE_UTC)
    except orjson.JSONEncodeError as error:
        if "64-bit" not in str(error):
            raise
        return orjson.dumps(_big_ints_exact(value), default=_json_value, option=orjson.OPT_NAIVE_UTC)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value).encode())
    if isinstance(value, bytes):
        return value.decode()
    raise TypeError(f"a {type(value).__name__} value")


def _big_ints_exact(value: Any) -> Any:
    """``value`` with each integer past 64 bits as a ``Decimal`` (orjson writes those as their digits)."""
    if isinstance(value, dict):
        return {key: _big_ints_exact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_big_ints_exact(item) for item in value]
    if type(value) is int and not -(2**63) <= value < 2**64:
        return Decimal(value)
    return value


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


def _csv_records(source: BinaryIO) -> Iterator[ParsedRecord | RejectedRecord]:
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
            elif (row_problem := _csv_row_problem(header, row)) is not None:
                yield RejectedRecord(record_no, row_problem, _csv_row_bytes(row))
            else:
                payload = {name: value for name, value in zip(header, row, strict=True) if value != ""}
                yield ParsedRecord(record_no, payload, orjson.dumps(payload).decode())
    except StreamDamaged as damage:
        yield RejectedRecord(next_record_line, damage.reason, b"")
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

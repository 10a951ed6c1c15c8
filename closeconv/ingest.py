"""Landing folder → validated records → deduplicated events plus quarantine.

Every input record ends up in exactly one place: loaded, dropped as an exact duplicate
(counted), or quarantined in `rejected_events` with its file, line, raw text and a reason.

Files are parsed and validated in one pass, block by block straight from Arrow, and cached
in the staging database by fingerprint (size + mtime), so a run re-reads only new or changed
files; deduplication then runs over the whole set, which keeps the result a function of the
set of events, not of file batching. A record's raw text is kept only where a person may
need it: rejected records and closes (an orphan close is known only after sessionizing);
a conflicting duplicate (known only across files) has its text re-read from its file.
All record-level work is vectorized in DuckDB; Python only touches files.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import sys
import gzip
import io
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from closeconv import changes
from closeconv.contract import (
    ALLOWED_SOURCES,
    DEFAULT_SOURCE,
    EVENT_FIELDS,
    EVENT_KIND_RANK,
    EVENT_TYPES,
    PLATFORM_FIELDS,
    REQUIRED_FIELDS,
    USER_ID_REQUIRED_FOR_USER_SOURCE,
)
from closeconv.progress import progress_logger
from closeconv.read_ahead import read_ahead
from closeconv.transactions import transaction

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")

# JSON lines never contain a raw unit separator (JSON escapes control characters), so reading
# with it as the CSV delimiter yields exactly one column per physical line.
_LINE_DELIMITER = "\x1f"
_BATCH_ROWS = 200_000
_INSERT_BYTES = 128 << 20
_JSONL_BLOCK_BYTES = 16 << 20
# Part of every file's fingerprint: when the readers change what a file's records are (line
# breaks, blank lines, encodings), raw records cached by an older version are re-read.
PARSER_VERSION = "p2"

# Reading a CSV whose misshapen row is also not UTF-8: pyarrow can hand such a row over only
# as text, so the file is read through a codec that turns each undecodable byte (0x80-0xFF)
# into a private-use character U+F0080-U+F00FF; SQL then finds the marked values again.
_MARKED_UTF8 = "closeconv-utf8-marked"
_MARK_BASE = 0xF0000
_MARK_RE = re.compile("[\U000F0080-\U000F00FF]")


def _mark_bad_bytes(err: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(chr(_MARK_BASE + b) for b in err.object[err.start : err.end]), err.end


def _find_marked_utf8(name: str) -> codecs.CodecInfo | None:
    if name.replace("_", "-") != _MARKED_UTF8:
        return None
    utf8 = codecs.lookup("utf-8")

    class Decoder(codecs.BufferedIncrementalDecoder):
        def _buffer_decode(self, data, errors, final):
            return codecs.utf_8_decode(data, "closeconv-mark-bad-bytes", final)

    return codecs.CodecInfo(utf8.encode, utf8.decode, incrementaldecoder=Decoder, name=_MARKED_UTF8)


codecs.register_error("closeconv-mark-bad-bytes", _mark_bad_bytes)
codecs.register(_find_marked_utf8)


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{PARSER_VERSION}"


@dataclass(frozen=True)
class LandingFile:
    path: Path
    name: str  # path relative to the landing folder, as stored in `file` columns
    fmt: str  # jsonl | csv | parquet
    fingerprint: str


@dataclass
class IngestStats:
    files_total: int = 0
    files_parsed: int = 0
    files_ignored: list[str] = field(default_factory=list)
    records_read: int = 0
    valid_records: int = 0
    events_unique: int = 0
    duplicates_dropped: int = 0


def detect_format(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _event_files(root: Path) -> tuple[dict[str, LandingFile], list[str]]:
    files: dict[str, LandingFile] = {}
    ignored: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue  # hidden files: editors' swap files, partial uploads (.tmp), .gitkeep
        fmt = detect_format(path)
        if fmt is None:
            ignored.append(rel)
            continue
        files[rel] = LandingFile(path, rel, fmt, _fingerprint(path))
    return files, ignored


def discover_landing_files(landing_dir: Path, archive_dir: Path | None = None) -> tuple[list[LandingFile], list[str]]:
    """Event files under the landing folder (recursively), sorted by name; plus ignored names.

    With an archive folder, its files count as well, under the same relative names (moving a
    file there keeps its size and mtime, so it is not parsed again); a file of the same name
    in the landing folder is the newer delivery and wins."""
    files, ignored = _event_files(landing_dir)
    if archive_dir is not None and archive_dir.is_dir():
        archived, _ = _event_files(archive_dir)
        files = {**archived, **files}
    return [files[name] for name in sorted(files)], ignored


# --------------------------------------------------------------------------------------
# Staging cache: one validated row per input record, cached per file version


class RecordSink(Protocol):
    """Where a reader sends a file's records, block by block.

    `block` holds the record's line number in its column `line`; `select` reads it, registered
    as the Arrow table `_block`, and yields (line, raw, is_json_text):
    the record's line number, its text (NULL: an empty record), and whether that text is the
    record as JSON (false: a CSV row of another width, or a record that is not UTF-8)."""

    def add(self, block: pa.Table, select: str) -> None: ...

    def restart(self) -> None:
        """Forget what was added: the reader starts the file again from line 1."""


class RecordTable:
    """A sink that inserts records into `table` (file, line, raw, is_json_text), optionally
    only the given line numbers (re-reading a few records' text)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, file: str, table: str = "raw_records",
                 lines: list[int] | None = None):
        self.con, self.file, self.table = con, file, table
        self.wanted = None if lines is None else pa.array(lines, pa.int64())

    def add(self, block: pa.Table, select: str) -> None:
        if self.wanted is not None:
            # Only the wanted lines reach DuckDB: re-reading a few records of a large file would
            # otherwise send every line of it through `select` (~2 CPU s per 5M lines).
            block = block.filter(pc.is_in(block.column("line"), value_set=self.wanted))
            if block.num_rows == 0:
                return
        self.con.register("_block", block)
        self.con.execute(f"INSERT INTO {self.table} SELECT ?, line, raw, is_json_text FROM ({select})", [self.file])
        self.con.unregister("_block")

    def restart(self) -> None:
        self.con.execute(f"DELETE FROM {self.table} WHERE file = ?", [self.file])


class _ValidatingSink:
    """Validates each block as it is read, into `validated_records` (the caller's transaction)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, file: str):
        self.con, self.file, self.records = con, file, 0

    def add(self, block: pa.Table, select: str) -> None:
        # Chunks of VALIDATION_CHUNK_ROWS bound the memory of the parse stage whatever the block.
        for start in range(0, block.num_rows, VALIDATION_CHUNK_ROWS):
            self.con.register("_block", block.slice(start, VALIDATION_CHUNK_ROWS))
            source = (f"(SELECT {_sql_string(self.file)} AS file, line, raw, is_json_text, "
                      f"NULL::VARCHAR AS file_error FROM ({select}))")
            self.records += self.con.execute(_validation_sql(source)).fetchone()[0]
            self.con.unregister("_block")

    def add_unreadable(self, file_error: str) -> None:
        source = (f"(SELECT {_sql_string(self.file)} AS file, 0::BIGINT AS line, NULL::VARCHAR AS raw, "
                  f"FALSE AS is_json_text, {_sql_string(file_error)} AS file_error)")
        self.records += self.con.execute(_validation_sql(source)).fetchone()[0]

    def restart(self) -> None:
        self.con.execute("DELETE FROM validated_records WHERE file = ?", [self.file])
        self.records = 0


def _ensure_staging_tables(con: duckdb.DuckDBPyConnection) -> None:
    """`landing_files` (one row per parsed file version) and the per-file validation cache.

    A file's validated records count only once `landing_files` names its version: both are
    written in the same transaction, so a run killed mid-file leaves no half-read file. The
    cache is emptied whenever the validation rules themselves change (records are validated
    as they are read, so every file is then read again)."""
    con.sql(
        """
        CREATE TABLE IF NOT EXISTS landing_files (
            file VARCHAR PRIMARY KEY, fingerprint VARCHAR, format VARCHAR,
            records BIGINT, parsed_at TIMESTAMPTZ, file_error VARCHAR, path VARCHAR)
        """
    )
    sql = _validation_sql(_NO_RECORDS)
    rules_version = hashlib.sha256(sql.encode()).hexdigest()[:16]
    con.sql("CREATE TABLE IF NOT EXISTS staging_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    known = con.sql("SELECT value FROM staging_meta WHERE key = 'validation_rules'").fetchall()
    if known and known[0][0] == rules_version and not changes.missing_tables(con, ["validated_records"]):
        return  # as the last run left it (binding the validation query to create it costs ~0.1 s)
    with transaction(con):
        if known and known[0][0] != rules_version:
            con.sql("DROP TABLE IF EXISTS validated_records")
            con.sql("DELETE FROM landing_files")
            changes.mark_everything(con, [changes.EVENTS])
        con.sql("CREATE TABLE IF NOT EXISTS validated_records AS " + sql.split("INSERT INTO validated_records", 1)[1])
        con.sql("INSERT OR REPLACE INTO staging_meta VALUES ('validation_rules', ?)", params=[rules_version])


_NO_RECORDS = ("(SELECT NULL::VARCHAR AS file, NULL::BIGINT AS line, NULL::VARCHAR AS raw, "
               "NULL::BOOLEAN AS is_json_text, NULL::VARCHAR AS file_error WHERE false)")


def _journal_file_records(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """The events step recomputes the contacts (and event ids) of a file's records that come or go.

    Valid records only: a validation reject belongs to no contact, and the events step brings
    those up to date by file (closeconv/events_scope.py)."""
    changes.mark_contacts(con, [changes.EVENTS],
                          "SELECT contact_id, event_id FROM validated_records WHERE file = ? AND reason_code IS NULL",
                          [name])


def _forget_file(con: duckdb.DuckDBPyConnection, name: str, journal: bool = True) -> None:
    if journal:
        _journal_file_records(con, name)
    for table in ("validated_records", "landing_files"):
        con.sql(f"DELETE FROM {table} WHERE file = ?", params=[name])


def _files_out_of_step(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Files whose row count in `validated_records` is not the count `landing_files` holds for
    them, or that have rows but no bookkeeping (both tables are staging's own, never user input)."""
    return [r[0] for r in con.sql(
        """
        SELECT b.file FROM landing_files b
        LEFT JOIN (SELECT file, count(*) AS n FROM validated_records GROUP BY file) r USING (file)
        WHERE coalesce(r.n, 0) <> b.records
        UNION
        SELECT r.file FROM (SELECT DISTINCT file FROM validated_records) r ANTI JOIN landing_files USING (file)
        """
    ).fetchall()]


def _drop_damaged_cache_entries(con: duckdb.DuckDBPyConnection) -> None:
    """A cache entry whose row count disagrees with its own bookkeeping is forgotten (and redone)."""
    damaged = _files_out_of_step(con)
    with transaction(con):
        for name in damaged:
            _forget_file(con, name, journal=False)
        if damaged:  # what those files had contributed is unknown: recompute every contact
            changes.mark_everything(con, [changes.EVENTS])
    if damaged:
        progress_logger.warning(
            f"staging cache: {len(damaged)} file(s) were incomplete (an interrupted run?); redoing them"
        )


def _opener(path: Path):
    return gzip.open if path.name.lower().endswith(".gz") else open


def _jsonl_batches(path: Path):
    """Yield (first_line_number, binary column of lines) batches; blank lines keep their numbers.

    A line ends at \n, \r\n or a lone \r (as in CSV). Lines are bytes: their UTF-8 is checked
    per line when they are inserted, so one bad byte quarantines one line, not the file."""
    read_options = pacsv.ReadOptions(column_names=["raw"], block_size=_JSONL_BLOCK_BYTES)
    parse_options = pacsv.ParseOptions(
        delimiter=_LINE_DELIMITER, quote_char=False, escape_char=False, ignore_empty_lines=False
    )
    convert_options = pacsv.ConvertOptions(
        column_types={"raw": pa.binary()}, strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    try:
        reader = pacsv.open_csv(path, read_options, parse_options, convert_options)
        next_line = 1
        for batch in reader:
            yield next_line, batch.column(0)
            next_line += batch.num_rows
        return
    except pa.ArrowInvalid:
        pass  # a line with a stray unit separator, or longer than a block: split lines in C
    # bytes.splitlines knows the same three line breaks; a chunk is cut after its last \n, so
    # a \r\n is never split between chunks. Still vectorized: no Python code runs per line.
    next_line, rest, first = 1, b"", True
    with _opener(path)(path, "rb") as fh:
        while True:
            chunk = fh.read(_JSONL_BLOCK_BYTES)
            data = rest + chunk
            if first and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]  # a byte-order mark is not part of the first record
            first = False
            cut = len(data) if not chunk else data.rfind(b"\n") + 1
            lines = data[:cut].splitlines()
            rest = data[cut:]
            if lines:
                yield next_line, pa.array(lines, pa.binary())
                next_line += len(lines)
            if not chunk:
                return


def _as_text(column: pa.Array, marked: bool = False) -> tuple[pa.Array, pa.Array | None]:
    """A bytes column as text, and which values were UTF-8 (None: all of them, the common case).

    All-UTF-8 costs one C++ check. Otherwise the values that are not are found in C++ and only
    they are decoded in Python, with replacement characters (for the quarantine's raw record):
    the work follows the bad values, not the rows. `marked`: the bytes were read through the
    marking codec (see _MARKED_UTF8) and the marks are found by a regex. Other types pass."""
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        return column, None
    if marked:
        text = column.cast(pa.string())
        bad = pc.fill_null(pc.match_substring_regex(text, _MARK_RE.pattern), False)
        return pc.replace_substring_regex(text, _MARK_RE.pattern, "\ufffd"), pc.invert(bad)
    try:
        return column.cast(pa.string()), None
    except pa.ArrowInvalid:
        pass
    ok = _utf8_mask(column)
    bad_at = np.flatnonzero(~ok.to_numpy(zero_copy_only=False))
    repaired = [b.decode("utf-8", "replace").encode() for b in column.take(pa.array(bad_at)).to_pylist()]
    fixed = pc.replace_with_mask(column, pc.invert(ok), pa.array(repaired, column.type))
    return fixed.cast(pa.string()), ok


def _utf8_mask(column: pa.Array) -> pa.Array:
    """True where a bytes value is UTF-8 (or null), checked in DuckDB."""
    con = duckdb.connect()
    try:
        con.register("_bytes", pa.table({"v": column}))
        return con.sql("SELECT v IS NULL OR try(decode(v)) IS NOT NULL AS ok FROM _bytes").arrow().read_all().column(0).combine_chunks()
    finally:
        con.close()


# pyarrow imports pandas (0.2-0.25 s, a fixed cost of every run that reads a file) the first
# time it converts a Python or numpy value (pa.array, pa.table of a dict, a Python scalar such
# as fill_null(True)). Nothing here needs pandas, so the JSONL and Parquet blocks' columns are
# built from buffers and compute kernels instead; the CSV reader (line starts, counts) and the
# rare paths (bad UTF-8, a CSV row of another width) still convert.
def _int64_range(start: int, n: int) -> pa.Array:
    """start, start + 1, ... (n values): line numbers, from numpy's buffer without a conversion."""
    return pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(np.arange(start, start + n, dtype=np.int64))])


def _all_true(n: int) -> pa.Array:
    return pc.is_null(pa.nulls(n, pa.bool_()))


def _jsonl_blocks(path: Path):
    """(first_line, line numbers, text, utf8_ok) per block of lines read."""
    for first_line, column in _jsonl_batches(path):
        # Lines are numbered before blank ones are dropped, so numbers stay true to the file
        # (numpy: a Python range of a block's lines costs a second per million).
        lines = _int64_range(first_line, len(column))
        text, utf8_ok = _as_text(column)
        if utf8_ok is None:
            utf8_ok = _all_true(len(text))
        yield first_line, lines, text, utf8_ok


def _stage_jsonl(f: LandingFile, sink: RecordSink) -> None:
    # Blocks go to the sink in groups of about _INSERT_BYTES of text: each statement has a fixed
    # cost (one per 16 MB block cost 2.4 s per million lines, one of 1M lines 1.4 s), and a group
    # bounds the memory held whatever the length of the lines.
    group: list[tuple[pa.Array, pa.Array, pa.Array]] = []

    def insert() -> None:
        if not group:
            return
        table = pa.Table.from_arrays([pa.chunked_array([g[i] for g in group]) for i in range(3)],
                                     names=["line", "raw", "utf8_ok"])
        group.clear()
        # Blank lines (spaces and tabs only) are not records. trim() with a character set costs
        # 2 s per million lines; a line starting with neither (almost all) needs no trim.
        sink.add(table, "SELECT line, raw, utf8_ok AS is_json_text FROM _block "
                        "WHERE (raw <> '' AND left(raw, 1) NOT IN (' ', '\t')) OR trim(raw, ' \t') <> ''")

    # The next group's blocks are read while this one is validated (about one group ahead).
    for first_line, lines, text, utf8_ok in read_ahead(_jsonl_blocks(f.path), _INSERT_BYTES // _JSONL_BLOCK_BYTES):
        if first_line == 1:
            # The splitting fallback restarts at line 1 after the fast reader failed on a
            # later block: drop what the fast reader staged, or those lines would count twice.
            group.clear()
            sink.restart()
        group.append((lines, text, utf8_ok))
        if sum(g[1].nbytes for g in group) >= _INSERT_BYTES:
            insert()
    insert()


def _csv_header(path: Path) -> tuple[list[str], int]:
    """The header row and the number of lines it spans (a quoted name may hold a line break)."""
    # utf-8-sig: a byte-order mark (Excel's CSV export) must not become part of the first column name.
    with _opener(path)(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        return next(reader, []), reader.line_num


def _unique_names(header: list[str]) -> list[str]:
    """Column names as keys of the record: blank ones get a position, repeats a suffix.

    Names are data, never SQL: they only ever reach DuckDB as string literals."""
    names: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(header):
        name = raw.strip() or f"column_{i + 1}"
        candidate, n = name, 2
        while candidate in seen:
            candidate, n = f"{name}#{n}", n + 1
        seen.add(candidate)
        names.append(candidate)
    return names


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _line_breaks(column: pa.Array) -> pa.Array:
    """Line breaks inside each value (\r\n, \r or \n count one each), 0 for nulls."""
    count = lambda pattern: pc.fill_null(pc.count_substring(column, pattern), 0)  # noqa: E731
    return pc.subtract(pc.add(count("\n"), count("\r")), count("\r\n"))


def _read_csv_rows(
    path: Path, names: list[str], use_threads: bool, encoding: str = "utf8"
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Every row with the header's number of fields (values as bytes), and the other rows.

    Rows of another width come back as (row number, text); their numbers are known only
    when reading on one thread."""
    invalid: list[tuple[int, str]] = []

    def keep_aside(row):
        invalid.append((row.number, row.text))
        return "skip"

    # pyarrow reports a row it cannot decode for keep_aside through sys.unraisablehook, then
    # fails the read (the caller reads again through the marking codec): no stray traceback.
    unraisable, sys.unraisablehook = sys.unraisablehook, lambda _: None
    try:
        return _read_csv_blocks(path, names, use_threads, encoding, keep_aside, invalid)
    finally:
        sys.unraisablehook = unraisable


def _read_csv_blocks(path, names, use_threads, encoding, keep_aside, invalid):

    block_size = 16 << 20
    while True:
        invalid.clear()
        try:
            table = pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, use_threads=use_threads,
                                               block_size=block_size, encoding=encoding),
                # Blank lines are read as empty rows (not skipped), so each row keeps its place.
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=keep_aside, ignore_empty_lines=False
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.binary() for n in names}, strings_can_be_null=True, null_values=[""]
                ),
            )
            return table, list(invalid)
        except pa.ArrowInvalid as exc:
            # A header and nothing after it (not even a line break): no records. A header
            # larger than a block is the other cause of "could not skip": grow the block.
            if "Empty CSV file" in str(exc) or ("Could not skip" in str(exc) and block_size > path.stat().st_size):
                return pa.table({n: pa.array([], pa.binary()) for n in names}), []
            # A value longer than a block: read again with blocks large enough to hold it.
            if not ("straddling" in str(exc) or "Could not skip" in str(exc)) or block_size > path.stat().st_size * 8:
                raise
            block_size *= 8


def _stage_csv(f: LandingFile, sink: RecordSink) -> None:
    """Rows → JSON objects keyed by the header, numbered by the line each row starts on.

    All in pyarrow and DuckDB: a multi-line value, a row of the wrong width or a byte that is
    not UTF-8 is handled per row in C++, never by a Python loop over the file."""
    header, header_lines = _csv_header(f.path)
    if not header:
        return
    names = _unique_names(header)
    marked = False
    try:
        table, invalid = _read_csv_rows(f.path, names, use_threads=True)
        if invalid:  # only a single-threaded read numbers the rows of another width
            table, invalid = _read_csv_rows(f.path, names, use_threads=False)
    except pa.ArrowInvalid as exc:
        if "straddling" in str(exc):
            raise
        # A row of another width that is also not UTF-8 (pyarrow hands rows over as text only).
        table, invalid = _read_csv_rows(f.path, names, use_threads=False, encoding=_MARKED_UTF8)
        marked = True
        invalid = [(n, _MARK_RE.sub("\ufffd", text)) for n, text in invalid]
    # Row k (0-based, of every row after the header) starts after the header's lines, the k
    # rows before it, and the line breaks inside their values.
    invalid_at = np.array([number - 2 for number, _ in invalid], dtype=np.int64)
    total = table.num_rows + len(invalid)
    valid_at = np.setdiff1d(np.arange(total, dtype=np.int64), invalid_at, assume_unique=True)
    breaks = np.zeros(total, dtype=np.int64)
    if table.num_columns and table.num_rows:
        breaks[valid_at] = np.sum([_line_breaks(table.column(i)).to_numpy() for i in range(table.num_columns)], axis=0)
    breaks[invalid_at] = [text.count("\n") + text.count("\r") - text.count("\r\n") for _, text in invalid]
    starts = header_lines + 1 + np.arange(total, dtype=np.int64) + np.cumsum(breaks) - breaks
    table = table.append_column("__line", pa.array(starts[valid_at]))
    _add_rows_as_json(sink, table, names, csv_rows=True, marked=marked)
    bad = [(int(starts[at]), text) for at, (_, text) in zip(invalid_at, invalid) if text.strip(" \t\r\n")]
    _add_malformed_rows(sink, bad)


def _add_malformed_rows(sink: RecordSink, rows: list[tuple[int, str]]) -> None:
    """Rows whose width differs from the header's: not JSON text, so validation quarantines them."""
    if not rows:
        return
    table = pa.table({"line": pa.array([r[0] for r in rows], pa.int64()), "raw": pa.array([r[1] for r in rows], pa.string())})
    sink.add(table, "SELECT line, raw, FALSE AS is_json_text FROM _block")


def _add_rows_as_json(
    sink: RecordSink, table: pa.Table, names: list[str], csv_rows: bool = False, marked: bool = False,
) -> None:
    """Insert each row as a JSON object keyed by `names` (columns by position; `__line` last).

    `csv_rows`: the values are CSV text read as bytes. Their UTF-8 is checked per value: a row
    with a bad byte is kept as a record that is not JSON text, and validation quarantines it
    for its encoding; a row whose values are all empty is not a record. (A Parquet binary
    column is data of its own type, rendered by json_object.)"""
    # Positional column aliases, names as string literals: any header text is safe here.
    columns, utf8_ok = [], None
    for i in range(len(names)):
        column, ok = _as_text(table.column(i).combine_chunks(), marked) if csv_rows else (table.column(i), None)
        columns.append(column)
        if ok is not None:
            utf8_ok = ok if utf8_ok is None else pc.and_(utf8_ok, ok)
    if utf8_ok is None:
        utf8_ok = _all_true(table.num_rows)
    aliases = [f"c{i}" for i in range(len(names))]
    # The block the sink gets names its line numbers `line`, as every reader's does (the values
    # are aliased c0, c1, ..., so no field of the file can take that name).
    table = pa.Table.from_arrays([*columns, table.column(len(names)), utf8_ok], names=[*aliases, "line", "__utf8_ok"])
    pairs = ", ".join(f"{_sql_string(n)}, {a}" for n, a in zip(names, aliases))
    blank = " AND ".join(f"coalesce(trim({a}::VARCHAR, ' \t\r\n'), '') = ''" for a in aliases) if csv_rows else ""
    sink.add(table, f"SELECT line, json_object({pairs})::VARCHAR AS raw, __utf8_ok AS is_json_text "
                    f"FROM _block WHERE NOT ({blank or 'false'})")


def _stage_parquet(f: LandingFile, sink: RecordSink) -> None:
    parquet = pq.ParquetFile(f.path)
    names = _unique_names(parquet.schema_arrow.names)
    first_row = 1
    for batch in parquet.iter_batches(batch_size=_BATCH_ROWS):
        rows = _int64_range(first_row, batch.num_rows)
        table = pa.Table.from_batches([batch]).append_column("__line", rows)
        _add_rows_as_json(sink, table, names)
        first_row += batch.num_rows


_STAGERS = {"jsonl": _stage_jsonl, "csv": _stage_csv, "parquet": _stage_parquet}


_READ_ERRORS = (duckdb.Error, pa.ArrowException, OSError, EOFError, UnicodeDecodeError, csv.Error)


def _restage_file(
    con: duckdb.DuckDBPyConnection, f: LandingFile, now: datetime, file_error: str | None = None
) -> None:
    """Replace one file's validated records in one transaction: its records, or one unreadable-file record."""
    con.sql("BEGIN TRANSACTION")
    try:
        _forget_file(con, f.name)
        sink = _ValidatingSink(con, f.name)
        if file_error is None:
            _STAGERS[f.fmt](f, sink)
        else:
            sink.add_unreadable(file_error)
        con.sql(
            "INSERT INTO landing_files VALUES (?, ?, ?, ?, ?, ?, ?)",
            params=[f.name, f.fingerprint, f.fmt, sink.records, now, file_error, str(f.path.absolute())],
        )
        _journal_file_records(con, f.name)
        con.sql("COMMIT")
    except BaseException:
        con.sql("ROLLBACK")
        raise


@contextmanager
def _unordered_inserts(con: duckdb.DuckDBPyConnection):
    """Let DuckDB insert validated records in any order (every reader of `validated_records`
    orders or groups what it reads): keeping the validation statement's rows in input order
    cost about a CPU-second per million records (docs/performance.md, ingest round 3)."""
    before = con.sql("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.sql("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        con.sql(f"SET preserve_insertion_order = {'true' if before else 'false'}")


def stage_landing_files(con: duckdb.DuckDBPyConnection, landing_dir: Path, archive_dir: Path | None = None) -> IngestStats:
    """Bring `validated_records` in line with the landing folder: read new or changed files only.

    Files of an unknown type are listed in `landing_unknown_files` (counted in the summary and
    in `pipeline_runs`), never skipped silently."""
    _ensure_staging_tables(con)
    _drop_damaged_cache_entries(con)
    files, ignored = discover_landing_files(landing_dir, archive_dir)
    stats = IngestStats(files_total=len(files), files_ignored=ignored)
    con.sql("CREATE OR REPLACE TABLE landing_unknown_files AS SELECT unnest(?::VARCHAR[]) AS file", params=[ignored])
    known = dict(con.sql("SELECT file, fingerprint FROM landing_files").fetchall())
    present = {f.name for f in files}
    with transaction(con):
        if not known:  # nothing staged yet: the events step builds everything (no journal of every record)
            changes.mark_everything(con, [changes.EVENTS])
        for gone in sorted(set(known) - present):
            _forget_file(con, gone)
        # Where each known file is now (moved to the archive folder?): a conflicting duplicate's
        # text is re-read from there.
        # Two lists unnested by DuckDB, not a pyarrow table: building one imports pandas (0.24 s a run).
        con.execute(
            "UPDATE landing_files lf SET path = p.path "
            "FROM (SELECT unnest(?::VARCHAR[]) AS file, unnest(?::VARCHAR[]) AS path) p "
            "WHERE lf.file = p.file AND lf.path IS DISTINCT FROM p.path",
            [[f.name for f in files], [str(f.path.absolute()) for f in files]],
        )
    now = datetime.now(timezone.utc)
    with _unordered_inserts(con):
        for f in files:
            if known.get(f.name) == f.fingerprint:
                continue
            try:
                _restage_file(con, f, now)
            except _READ_ERRORS as exc:
                # An unreadable file (corrupt gzip or parquet) is quarantined as one record. The
                # failed attempt was rolled back first: a DuckDB error while reading aborts the
                # transaction, so nothing more could be written in it.
                file_error = f"file could not be read as {f.fmt}: {type(exc).__name__}: {exc}".splitlines()[0]
                _restage_file(con, f, now, file_error)
            stats.files_parsed += 1
    stats.records_read = con.sql("SELECT coalesce(sum(records), 0) FROM landing_files").fetchall()[0][0]
    return stats


def _reread_raw_text(con: duckdb.DuckDBPyConnection, file: str, lines: list[int]) -> pa.Table | None:
    """(line, raw) of the given records, read again from the file; None if the file is gone or
    is no longer the version that was validated (the next run reads it again anyway)."""
    path, fmt, fingerprint = con.sql(
        "SELECT path, format, fingerprint FROM landing_files WHERE file = ?", params=[file]).fetchall()[0]
    try:
        if path is None or _fingerprint(Path(path)) != fingerprint:
            return None
        scratch = duckdb.connect()
        try:
            scratch.sql("CREATE TABLE raw_records (file VARCHAR, line BIGINT, raw VARCHAR, is_json_text BOOLEAN)")
            _STAGERS[fmt](LandingFile(Path(path), file, fmt, fingerprint), RecordTable(scratch, file, lines=lines))
            return scratch.sql("SELECT line, raw FROM raw_records").arrow().read_all()
        finally:
            scratch.close()
    except _READ_ERRORS:
        return None


# --------------------------------------------------------------------------------------
# Validation: raw records → candidate events or rejections (one SQL pass)


def _sql_list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _validation_sql(source: str) -> str:
    """One pass over `source` (file, line, raw, is_json_text, file_error): typed candidate
    events, or the problems that reject them, into `validated_records`.

    Each check is a boolean column; only the few failing records build their messages
    (CASE evaluates a branch only for the rows that take it), so valid records pay for
    one JSON parse and a handful of comparisons. The raw text is kept (`raw_record`) only
    for rejected records, closes and ids repeated in the block (see the module docstring).
    """
    parsed_fields = (*EVENT_FIELDS, *PLATFORM_FIELDS)
    struct = "{" + ", ".join(f'"{name}": "VARCHAR"' for name in parsed_fields) + "}"

    def suspicious(name: str) -> str:
        # from_json renders a number as its text, but also an object, array or boolean; only
        # values that look like one of those need the exact (slower) json_type.
        return f"(j.{name} IN ('true', 'false') OR left(j.{name}, 1) IN ('{{', '['))"

    def bad_type(name: str) -> str:
        return f"coalesce({name}_jtype IN ('BOOLEAN', 'OBJECT', 'ARRAY'), false)"

    jtype_cols = ",\n            ".join(
        f"CASE WHEN {suspicious(n)} THEN json_type(raw, '$.\"{n}\"') END AS {n}_jtype" for n in parsed_fields
    )
    # Not blank: trim() (which allocates a copy) only for the rare value whose first byte is not
    # printable ASCII (0x21-0x7E): trim removes spaces, never such a character. A suspicious value
    # that json_type finds to be a string ("[urgent] refund", "true") is text like any other.
    text_cols = ",\n            ".join(
        f"CASE WHEN coalesce({n}_jtype = 'VARCHAR', true) AND ((j.{n} >= '!' AND j.{n} < chr(127)) OR trim(j.{n}) <> '') "
        f"THEN j.{n} END AS {n}_txt" for n in parsed_fields
    )
    numeric_platform = [n for n, t in PLATFORM_FIELDS.items() if t != "VARCHAR"]
    platform_cols = ",\n        ".join(
        (f"lower(trim({n}_txt)) AS {n}" if n.endswith("_source") else f"trim({n}_txt) AS {n}") if t == "VARCHAR"
        else f"CAST(try_cast(trim({n}_txt) AS DOUBLE) AS {t}) AS {n}"
        for n, t in PLATFORM_FIELDS.items()
    )
    source_cases = "\n                ".join(
        f"WHEN '{et}' THEN [{_sql_list(srcs)}]" for et, srcs in ALLOWED_SOURCES.items()
    )
    default_cases = " ".join(f"WHEN '{et}' THEN '{src}'" for et, src in DEFAULT_SOURCE.items())
    rank_cases = " ".join(f"WHEN '{et}' THEN {r}" for et, r in EVENT_KIND_RANK.items())
    # Hours 00-23 and minutes 00-59, in the time and in the offset (RFC 3339): DuckDB's cast
    # alone would read 24:00 as the next day and +25:00 as a 25-hour offset.
    iso = r"^\d{4}-\d{2}-\d{2}[T ]([01]\d|2[0-3]):[0-5]\d(:\d{2}(\.\d{1,9})?)?"
    offset = r"([Zz]|[+-]([01]\d|2[0-3])(:?[0-5]\d)?)$"
    loose_iso = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?"
    any_offset = r"([Zz]|[+-]\d{2}(:?\d{2})?)$"
    integer = r"-?\d{1,19}"
    # Every instant in this range has a local date in years 0001-9999 in every timezone, which
    # every reader of the warehouse (Python, Polars, spreadsheets) can represent.
    lowest, highest = "0001-01-02 00:00:00+00", "9999-12-30 23:59:59.999999+00"
    user_id_types = _sql_list(USER_ID_REQUIRED_FOR_USER_SOURCE)
    q = "''"  # an escaped single quote inside a SQL string literal
    known_types = ", ".join(EVENT_TYPES)

    # (reason_code, failing condition, message) in reporting order: the first failing check
    # names the reason_code, and every failing check adds its message to `reason`.
    field_checks: list[tuple[str, str, str]] = [
        *[
            ("missing_field", f"{n}_txt IS NULL AND NOT {bad_type(n)}", f"'required field {n} is missing or empty'")
            for n in REQUIRED_FIELDS
        ],
        *[
            ("wrong_type", bad_type(n), f"'{n} must be a string, not a JSON ' || lower({n}_jtype)")
            for n in parsed_fields
            if n != "occurred_at"
        ],
        *[
            ("wrong_type", f"{n}_txt IS NOT NULL AND try_cast(trim({n}_txt) AS DOUBLE) IS NULL",
             f"'{n} must be a number, not ' || {n}_txt")
            for n in numeric_platform
        ],
        ("invalid_timestamp", bad_type("occurred_at"),
         "'occurred_at must be an ISO-8601 string with a UTC offset or integer epoch milliseconds'"),
        ("unknown_event_type", "event_type_norm IS NOT NULL AND allowed_sources IS NULL",
         f"'unknown event_type {q}' || event_type_txt || '{q}; expected one of {known_types}'"),
        ("invalid_timestamp", "occurred_at_txt IS NOT NULL AND occurred_at_ts IS NULL",
         f"""CASE
                WHEN epoch_ms IS NOT NULL AND (epoch_ms >= 100000000000 OR epoch_ms <= -100000000000) THEN 'occurred_at ' || occurred_at_txt
                    || ' is out of range for epoch milliseconds (microseconds? divide by 1000)'
                WHEN epoch_ms IS NOT NULL THEN 'occurred_at ' || occurred_at_txt
                    || ' is too small for epoch milliseconds (epoch seconds? multiply by 1000)'
                WHEN parsed_ts IS NOT NULL THEN 'occurred_at {q}' || occurred_at_txt
                    || '{q} is outside the supported range {lowest[:10]} to {highest[:10]} (UTC)'
                WHEN NOT has_offset AND regexp_matches(trim(occurred_at_txt), '{loose_iso}{any_offset}') THEN 'occurred_at {q}'
                    || occurred_at_txt || '{q} has an hour, minute or UTC offset out of range (hours 00-23, minutes 00-59)'
                WHEN NOT has_offset AND regexp_matches(trim(occurred_at_txt), '{iso}$') THEN 'occurred_at {q}'
                    || occurred_at_txt || '{q} has no UTC offset; add Z or an offset such as +07:00 (local times are never guessed)'
                ELSE 'occurred_at {q}' || occurred_at_txt
                    || '{q} is not a valid ISO-8601 timestamp with a UTC offset, nor integer epoch milliseconds'
            END"""),
        ("invalid_source", "allowed_sources IS NOT NULL AND source_norm IS NULL",
         "'source is required for ' || event_type_norm || '; one of ' || array_to_string(allowed_sources, ', ')"),
        ("invalid_source",
         "allowed_sources IS NOT NULL AND source_norm IS NOT NULL AND NOT list_contains(allowed_sources, source_norm)",
         f"'source {q}' || source_txt || '{q} is not allowed for ' || event_type_norm || '; one of ' || array_to_string(allowed_sources, ', ')"),
        ("missing_field", f"event_type_norm IN ({user_id_types}) AND source_norm = 'user' AND user_id_txt IS NULL",
         "'user_id is required when source is user on ' || event_type_norm"),
        ("missing_field", "event_type_norm = 'contact.assignee.updated' AND NOT has_assignee_field",
         "'assignee_id is required for contact.assignee.updated (give null or an empty value to unassign)'"),
    ]
    flag_cols = ",\n            ".join(f"coalesce({cond}, false) AS f{i}" for i, (_, cond, _) in enumerate(field_checks))
    any_flag = " OR ".join(f"f{i}" for i in range(len(field_checks)))
    messages = ",\n                ".join(f"CASE WHEN f{i} THEN {msg} END" for i, (_, _, msg) in enumerate(field_checks))
    first_code = " ".join(f"WHEN f{i} THEN '{code}'" for i, (code, _, _) in enumerate(field_checks))

    return f"""
    INSERT INTO validated_records
    -- The parse stage is MATERIALIZED: DuckDB would otherwise inline the parsed struct into
    -- every reference and parse each record once per field instead of once. The later stages
    -- are cheap expressions; materializing them too only copied every row again.
    WITH parsed AS (
        SELECT r.file, r.line, r.raw, r.file_error,
            r.is_json_text AND r.raw IS NOT NULL AND json_valid(r.raw) AS is_json,
            CASE WHEN r.raw IS NULL THEN 'empty'
                 -- A CSV row of the header's width is staged as a JSON object even when a value
                 -- is not UTF-8 (escaped); a row of another width keeps its CSV text.
                 WHEN NOT r.is_json_text AND (r.file ILIKE '%.csv' OR r.file ILIKE '%.csv.gz')
                      AND NOT (left(r.raw, 1) = '{{' AND json_valid(r.raw)) THEN 'row'
                 WHEN NOT r.is_json_text THEN 'bad_encoding'
                 WHEN r.raw LIKE '{{%' OR r.raw LIKE '[%' THEN 'jsonish'
                 ELSE 'text' END AS raw_shape
        FROM {source} r
    ),
    objects AS (
        -- Valid JSON whose first non-blank character is '{{' is an object: no json_type parse.
        SELECT file, line, raw, file_error, raw_shape, is_json,
            CASE WHEN NOT is_json THEN NULL
                 WHEN left(ltrim(raw), 1) = '{{' THEN 'OBJECT'
                 WHEN left(ltrim(raw), 1) = '[' THEN 'ARRAY'
                 ELSE 'SCALAR' END AS json_kind
        FROM parsed
    ),
    structs AS MATERIALIZED (
        SELECT *, CASE WHEN json_kind = 'OBJECT' THEN from_json(raw, '{struct}') END AS j
        FROM objects
    ),
    fields AS (
        SELECT file, line, raw, raw_shape, is_json, json_kind, file_error, j,
            {jtype_cols},
            CASE WHEN lower(trim(j.event_type)) = 'contact.assignee.updated'
                 THEN json_exists(raw, '$.assignee_id') END AS has_assignee_field
        FROM structs
    ),
    texts AS (
        SELECT *, {text_cols}
        FROM fields
    ),
    trimmed AS (
        -- trim() copies the value: only when its first or last character may be a space
        SELECT *,
            CASE WHEN occurred_at_txt >= '!' AND occurred_at_txt < chr(127) AND right(occurred_at_txt, 1) BETWEEN '!' AND '~'
                 THEN occurred_at_txt ELSE trim(occurred_at_txt) END AS occurred_at_trim
        FROM texts
    ),
    typed AS (
        SELECT *,
            lower(trim(event_type_txt)) AS event_type_norm,
            -- integer text only: DuckDB would round '1772442000000.6' to a whole number (an
            -- ISO timestamp is longer than the longest integer: no regex for it)
            CASE WHEN strlen(occurred_at_trim) <= 20 AND regexp_full_match(occurred_at_trim, '{integer}')
                 THEN try_cast(occurred_at_trim AS BIGINT) END AS epoch_ms,
            coalesce(regexp_matches(occurred_at_trim, '{iso}{offset}'), false) AS has_offset,
            coalesce(lower(trim(source_txt)), CASE lower(trim(event_type_txt)) {default_cases} END) AS source_norm,
            CASE lower(trim(event_type_txt))
                {source_cases}
            END AS allowed_sources
        FROM trimmed
    ),
    timed AS (
        SELECT *,
            CASE
                WHEN epoch_ms IS NOT NULL THEN
                    -- 1e11 ms is 1973 (smaller: epoch seconds?); 1e14 ms is year 5138 (and the
                    -- micro-second product must not overflow). No abs(): abs(-2^63) overflows.
                    CASE WHEN epoch_ms BETWEEN 100000000000 AND 99999999999999
                           OR epoch_ms BETWEEN -99999999999999 AND -100000000000
                         THEN make_timestamptz(epoch_ms * 1000) END
                -- upper(): the pattern accepts a lower-case 'z' (RFC 3339); the cast does not
                WHEN has_offset THEN try_cast(CASE WHEN contains(occurred_at_trim, 'z') THEN upper(occurred_at_trim) ELSE occurred_at_trim END AS TIMESTAMPTZ)
            END AS parsed_ts
        FROM typed
    ),
    ranged AS (
        SELECT *,
            CASE WHEN parsed_ts BETWEEN TIMESTAMPTZ '{lowest}' AND TIMESTAMPTZ '{highest}' THEN parsed_ts END
                AS occurred_at_ts
        FROM timed
    ),
    flagged AS (
        SELECT *, {flag_cols}
        FROM ranged
    ),
    checked AS (
    SELECT file, line, raw,
        CASE
            WHEN file_error IS NOT NULL THEN [file_error]
            WHEN NOT is_json THEN [CASE
                WHEN raw_shape = 'empty' THEN 'record is empty'
                WHEN raw_shape = 'jsonish' THEN 'line is not valid JSON (it may be truncated or have a trailing comma); fix the line and re-deliver it'
                WHEN raw_shape = 'row' THEN 'CSV row has a different number of fields than the header; quote values that contain commas'
                WHEN raw_shape = 'bad_encoding' THEN 'record is not valid UTF-8 (shown with replacement characters); re-export the file as UTF-8'
                ELSE 'line is not valid JSON; each line must hold one JSON object' END]
            WHEN json_kind <> 'OBJECT' THEN ['record is a JSON ' || lower(json_kind) || ', not an object; each line must hold one JSON object']
            WHEN NOT ({any_flag}) THEN []
            ELSE list_filter([
                {messages}
            ], lambda x: x IS NOT NULL)
        END AS problems,
        CASE
            WHEN file_error IS NOT NULL THEN 'unreadable_file'
            WHEN NOT is_json AND raw_shape IN ('jsonish', 'text') THEN 'invalid_json'
            WHEN NOT is_json AND raw_shape = 'bad_encoding' THEN 'invalid_encoding'
            WHEN NOT is_json THEN 'malformed_row'
            WHEN json_kind <> 'OBJECT' THEN 'not_an_object'
            {first_code}
        END AS reason_code,
        event_id_txt AS event_id,
        event_type_norm AS event_type,
        occurred_at_ts AS occurred_at,
        contact_id_txt AS contact_id,
        conversation_id_txt AS conversation_id,
        channel_id_txt AS channel_id,
        source_norm AS source,
        user_id_txt AS user_id,
        team_id_txt AS team_id,
        assignee_id_txt AS assignee_id,
        category_txt AS category,
        summary_txt AS summary,
        {platform_cols},
        CASE event_type_norm {rank_cases} END AS kind_rank
    FROM flagged
    ),
    -- ids delivered more than once in this block: a conflict among them needs their text
    -- (conflicts across blocks or files have it re-read from the file)
    repeated_ids AS (
        SELECT j.event_id FROM structs WHERE j.event_id IS NOT NULL GROUP BY ALL HAVING count(*) > 1
    )
    SELECT * EXCLUDE (raw),
        CASE WHEN reason_code IS NOT NULL OR event_type = 'conversation.closed'
                  OR event_id IN (SELECT event_id FROM repeated_ids) THEN raw END AS raw_record
    FROM checked
    """


VALIDATION_CHUNK_ROWS = 1_000_000
SCOPED_RECORDS = "_validated_scope"  # validate_and_dedupe's copy of a scope's records (a temp table)

CONTENT_COLUMNS = tuple(f for f in (*EVENT_FIELDS, *PLATFORM_FIELDS) if f != "event_id")


def validate_and_dedupe(
    con: duckdb.DuckDBPyConnection, stats: IngestStats | None = None, contacts: str = "true", files: str = "true",
    valid_copy: str | None = None,
) -> IngestStats | None:
    """Create temp tables `valid_events` (unique event ids) and `rejections` from validated_records
    (which `stage_landing_files` keeps in line with the landing folder). With `stats`, fill in its
    counts and return it (each count is a scan; the events step counts its own tables instead).

    `contacts` (a predicate on `contact_id`) limits dedupe to those contacts' records: it must
    hold for every record that shares an event_id with one of them (closeconv/events_scope.py).
    `files` (a predicate on `file`) limits the validation rejects to those files'.
    `valid_copy`: a temp table already holding exactly the valid records `contacts` selects (the
    events step's closure copies them as it reads them): taken over (renamed) and completed with
    the rejects, instead of reading those records again."""
    _ensure_staging_tables(con)
    if contacts == files == "true":
        con.sql(f"DROP TABLE IF EXISTS {SCOPED_RECORDS}")
        con.sql("CREATE OR REPLACE TEMP VIEW validated AS SELECT * FROM validated_records")
    else:
        # A scope is small: one copy, instead of a scan of every record per statement below.
        # Two branches, not one CASE: each branch's IN becomes a filter DuckDB pushes into the
        # scan, so the wide columns are fetched for the scope's rows only.
        rejects = f"SELECT * FROM validated_records WHERE reason_code IS NOT NULL AND ({files})"
        if valid_copy is None:
            con.sql(f"CREATE OR REPLACE TEMP TABLE {SCOPED_RECORDS} AS "
                    f"SELECT * FROM validated_records WHERE reason_code IS NULL AND ({contacts}) UNION ALL {rejects}")
        else:
            con.sql(f"DROP TABLE IF EXISTS {SCOPED_RECORDS}")
            con.sql(f"ALTER TABLE {valid_copy} RENAME TO {SCOPED_RECORDS}")
            con.sql(f"INSERT INTO {SCOPED_RECORDS} {rejects}")
        con.sql(f"CREATE OR REPLACE TEMP VIEW validated AS SELECT * FROM {SCOPED_RECORDS}")
    content = ", ".join(CONTENT_COLUMNS)
    # Exact duplicates (same id, same normalized content) collapse to the first delivery;
    # an id seen with different contents is a conflict and every version is quarantined.
    # hash() of the normalized content: only versions of the same event_id are compared, so
    # a 64-bit collision would have to happen within one id's handful of deliveries.
    # Views, not copies: each full-width copy of a million rows costs about a second.
    con.sql(
        f"""
        CREATE OR REPLACE TEMP VIEW candidates AS
        SELECT *, hash({content}) AS content_hash
        FROM validated WHERE reason_code IS NULL
        """
    )
    con.sql(
        """
        CREATE OR REPLACE TEMP TABLE id_groups AS
        SELECT event_id, count(*) AS deliveries,
            -- two distinct hashes or more: only "one or several" matters, and min/max is cheap
            CASE WHEN min(content_hash) = max(content_hash) THEN 1 ELSE 2 END AS versions
        FROM candidates GROUP BY event_id
        HAVING count(*) > 1
        """
    )
    differs = " || ".join(
        f"CASE WHEN count(DISTINCT {c}) > 1 OR count({c}) NOT IN (0, count(*)) THEN ['{c}'] ELSE [] END"
        for c in CONTENT_COLUMNS
    )
    # Only conflicting ids (few) pay for naming the fields that differ.
    con.sql(
        f"""
        CREATE OR REPLACE TEMP TABLE conflicts AS
        SELECT c.event_id, any_value(g.deliveries) AS deliveries, {differs} AS differing_fields
        FROM candidates c JOIN id_groups g USING (event_id)
        WHERE g.versions > 1
        GROUP BY c.event_id
        """
    )
    _keep_conflicting_raw_text(con)
    con.sql(
        f"""
        CREATE OR REPLACE TEMP VIEW valid_events AS
        WITH unique_ids AS (
            SELECT * FROM candidates ANTI JOIN id_groups USING (event_id)
        ),
        redelivered AS (
            SELECT c.* FROM candidates c JOIN id_groups g USING (event_id)
            WHERE g.versions = 1
            QUALIFY row_number() OVER (PARTITION BY c.event_id ORDER BY c.file, c.line) = 1
        )
        SELECT event_id, event_type, occurred_at, contact_id, conversation_id, channel_id,
               source, user_id, team_id, assignee_id, category, summary, kind_rank,
               file AS source_file, line AS source_line, {", ".join(PLATFORM_FIELDS)}
        FROM (SELECT * FROM unique_ids UNION ALL SELECT * FROM redelivered)
        """
    )
    con.sql(
        """
        CREATE OR REPLACE TEMP TABLE rejections AS
        SELECT v.file, v.line, v.raw_record, v.event_id, v.reason_code,
               array_to_string(v.problems, '; ') AS reason
        FROM validated v
        WHERE v.reason_code IS NOT NULL
        UNION ALL
        SELECT c.file, c.line, c.raw_record, c.event_id, 'conflicting_duplicate',
               'conflict: event_id ''' || c.event_id || ''' was delivered ' || g.deliveries
               || ' times with different content (differs in ' || array_to_string(g.differing_fields, ', ')
               || '); no version was loaded. Re-deliver the correct version with a new event_id, '
               || 'or remove the wrong one from the landing folder'
        FROM candidates c JOIN conflicts g USING (event_id)
        """
    )
    if stats is None:
        return None
    stats.records_read = con.sql("SELECT count(*) FROM validated").fetchall()[0][0]
    stats.valid_records = con.sql("SELECT count(*) FROM candidates").fetchall()[0][0]
    stats.events_unique = con.sql("SELECT count(*) FROM valid_events").fetchall()[0][0]
    stats.duplicates_dropped = con.sql(
        "SELECT coalesce(sum(deliveries - 1), 0) FROM id_groups WHERE versions = 1"
    ).fetchall()[0][0]
    return stats


def _keep_conflicting_raw_text(con: duckdb.DuckDBPyConnection) -> None:
    """Conflicting versions are quarantined with their raw text, which validation kept only for
    rejects and closes: read it again from their files, once (it is stored with the record)."""
    missing = con.sql(
        """
        SELECT v.file, list(v.line ORDER BY v.line) FROM validated v JOIN conflicts USING (event_id)
        WHERE v.reason_code IS NULL AND v.raw_record IS NULL
        GROUP BY v.file ORDER BY v.file
        """
    ).fetchall()
    for file, lines in missing:
        texts = _reread_raw_text(con, file, lines)
        if texts is None:
            continue
        con.register("_reread", texts)
        scoped = con.sql(f"SELECT 1 FROM duckdb_tables() WHERE table_name = '{SCOPED_RECORDS}' AND temporary").fetchall()
        with transaction(con):
            for table in ("validated_records", *([SCOPED_RECORDS] if scoped else [])):
                con.execute(f"UPDATE {table} v SET raw_record = r.raw FROM _reread r "
                            "WHERE v.file = ? AND v.line = r.line", [file])
        con.unregister("_reread")


# --------------------------------------------------------------------------------------
# Full refresh: forget the per-file caches so the next staging reads every file again
# --------------------------------------------------------------------------------------

STAGING_CACHE_TABLES = ("validated_records", "landing_files")


def forget_staging_caches(con: duckdb.DuckDBPyConnection) -> None:
    """Drop every cached parse and validation (`closeconv run --full-refresh`, docs/operations.md).

    The next `stage_landing_files` parses and validates every landing file as if staging were new;
    the published warehouse is untouched until that run publishes."""
    with transaction(con):
        for table in STAGING_CACHE_TABLES:
            con.sql(f"DROP TABLE IF EXISTS {table}")
        changes.mark_everything(con, [changes.EVENTS])

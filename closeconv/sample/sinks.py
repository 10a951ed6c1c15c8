"""Sinks: write records to one file (JSON Lines, optionally gzipped; CSV; Parquet)."""

from __future__ import annotations

import csv
import gzip as _gzip
from pathlib import Path

from closeconv.contract import EVENT_FIELDS

class _JsonlSink:
    def __init__(self, path: Path, gzip: bool) -> None:
        self._raw = open(path, "wb")
        # mtime=0 and no file name in the header keep gzip output byte-identical across runs.
        self._f = (
            _gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6) if gzip else self._raw
        )
        self._buf: list[str] = []

    def write_many(self, records: list[str]) -> None:
        self._buf.extend(records)
        if len(self._buf) >= 4096:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self._f.write("".join(self._buf).encode("utf-8"))
            self._buf.clear()

    def close(self) -> None:
        self.flush()
        if self._f is not self._raw:
            self._f.close()
        self._raw.close()


class _CsvSink:
    def __init__(self, path: Path) -> None:
        self._f = open(path, "w", encoding="utf-8", newline="")
        self._w = csv.writer(self._f, lineterminator="\n")
        self._w.writerow(EVENT_FIELDS)

    def write_many(self, records: list[tuple]) -> None:
        self._w.writerows(records)

    def close(self) -> None:
        self._f.close()


class _ParquetSink:
    """Row groups of `row_group_size` rows. Rows are turned into Arrow batches every 10k
    rows, so at most 10k Python row tuples plus one row group of Arrow data are held."""

    def __init__(self, path: Path, row_group_size: int = 100_000) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self._schema = pa.schema([(f, pa.string()) for f in EVENT_FIELDS])
        self._w = pq.ParquetWriter(path, self._schema, compression="zstd")
        self._rows: list[tuple] = []
        self._batches: list = []
        self._buffered = 0
        self._size = row_group_size

    def write_many(self, records: list[tuple]) -> None:
        self._rows.extend(records)
        if len(self._rows) >= 10_000:
            self._to_batch()

    def _to_batch(self) -> None:
        if not self._rows:
            return
        pa = self._pa
        cols = list(zip(*self._rows))
        arrays = [pa.array(c, type=pa.string()) for c in cols]
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self._buffered += len(self._rows)
        self._rows = []
        while self._buffered >= self._size:
            table = self._pa.Table.from_batches(self._batches, schema=self._schema)
            self._w.write_table(table.slice(0, self._size), row_group_size=self._size)
            rest = table.slice(self._size)
            self._batches, self._buffered = rest.to_batches(), rest.num_rows

    def close(self) -> None:
        self._to_batch()
        if self._buffered:
            table = self._pa.Table.from_batches(self._batches, schema=self._schema)
            self._w.write_table(table, row_group_size=self._size)
        self._batches = []
        self._w.close()


def output_paths(out_dir: Path, fmt: str, files: int, gzip: bool = False) -> list[Path]:
    """The files generate_sample() writes, in order."""
    ext = {"jsonl": ".jsonl.gz" if gzip else ".jsonl", "csv": ".csv", "parquet": ".parquet"}[fmt]
    return [Path(out_dir) / f"events-{i:04d}{ext}" for i in range(1, files + 1)]

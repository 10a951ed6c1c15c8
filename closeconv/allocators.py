"""The pipeline's memory is reused, not handed back to the kernel and faulted in again.

Profiled with perf on a full run of 5M events: about a quarter of all CPU time was the kernel
zeroing fresh pages (`clear_page_erms`) that an allocator had just returned to it. Two
allocators did most of it (docs/performance.md, "Allocators (session 18)"):

- pyarrow's default pool on Linux (mimalloc), under the landing readers' blocks: about half of
  the landing step's CPU. Its jemalloc pool keeps freed pages for reuse.
- DuckDB's buffer pool, which purges DuckDB's allocator whenever it evicts near the memory cap,
  and after every task that peaked above 128 MB. DuckDB's block allocator keeps the memory of
  buffer blocks instead (kept until the connection closes, sized to the cap, which bounds it anyway).
"""

from __future__ import annotations

import os

import duckdb
import pyarrow as pa


def use_jemalloc_for_arrow() -> None:
    """pyarrow's jemalloc pool for the whole process, unless the user chose one
    (ARROW_DEFAULT_MEMORY_POOL) or this build of pyarrow has none (Windows wheels)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:
        return
    pa.set_memory_pool(pool)


# Each is set to the memory cap: the block allocator's reserve, and the sizes above which DuckDB
# purges its allocator after a task or a bulk free (its defaults: 0, 128 MB, 512 MB).
KEEP_MEMORY_SETTINGS = ("block_allocator_memory", "allocator_flush_threshold", "allocator_bulk_deallocation_flush_threshold")


def keep_duckdb_memory(con: duckdb.DuckDBPyConnection, memory_limit_bytes: int) -> None:
    """DuckDB keeps up to its memory cap for reuse instead of purging it after each task."""
    for name in KEEP_MEMORY_SETTINGS:
        con.sql(f"SET {name} = '{int(memory_limit_bytes)}B'")

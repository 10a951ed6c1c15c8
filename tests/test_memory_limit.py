"""The memory cap (issue 8): `--memory-limit` / CLOSECONV_MEMORY_LIMIT caps the staging DuckDB,
which then spills into the staging folder; a bad value is a configuration error before any work."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from closeconv.allocators import KEEP_MEMORY_SETTINGS
from closeconv.cli import main
from closeconv.config import DEFAULT_MEMORY_LIMIT_CEILING, MIN_MEMORY_LIMIT, default_memory_limit, resolve_settings
from closeconv.warehouse import _open_staging, staging_connection

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("events", "conversations", "workflow_runs", "workflow_actions", "assignments", "rejected_events")


@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("CLOSECONV_") or name == "DAGSTER_HOME":
            monkeypatch.delenv(name)


def _empty(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run(landing: Path, warehouse: Path, *extra: str, env: dict[str, str] | None = None):
    return CliRunner(env=env).invoke(
        main, ["run", "--quiet", "--landing", str(landing), "--warehouse", str(warehouse),
               "--workflows", str(ROOT / "workflows"), "--reference", str(_empty(landing.parent / "reference")), *extra],
    )


def _table_hashes(warehouse: Path) -> dict[str, tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        # ingested_at is the run's clock, not data: left out.
        return {t: con.sql(f"SELECT count(*), sum(hash(COLUMNS(* EXCLUDE (ingested_at)))::HUGEINT) FROM {t} t" if t == "rejected_events"
                           else f"SELECT count(*), sum(hash(t)::HUGEINT) FROM {t} t").fetchall()[0] for t in TABLES}
    finally:
        con.close()


def test_small_memory_limit_gives_the_same_tables(tmp_path):
    landing = tmp_path / "landing"
    gen = CliRunner().invoke(main, ["generate", "-n", "8000", "--out", str(landing)])
    assert gen.exit_code == 0, gen.output
    free = _run(landing, tmp_path / "free" / "wh.duckdb")
    assert free.exit_code == 0, free.output
    capped = _run(landing, tmp_path / "capped" / "wh.duckdb", env={"CLOSECONV_MEMORY_LIMIT": "300MB"})
    assert capped.exit_code == 0, capped.output
    free_tables = _table_hashes(tmp_path / "free" / "wh.duckdb")
    assert free_tables["events"][0] > 80_000
    assert _table_hashes(tmp_path / "capped" / "wh.duckdb") == free_tables
    # The spill folder lives inside the pipeline-private staging folder, not in /tmp; with no
    # limit given the default cap applies, and spills there too.
    assert (tmp_path / "capped" / ".closeconv" / "wh.staging.spill").is_dir()
    assert (tmp_path / "free" / ".closeconv" / "wh.staging.spill").is_dir()


@pytest.mark.parametrize("ram, expected", [
    (24 * 2**30, DEFAULT_MEMORY_LIMIT_CEILING),  # this machine: the ceiling
    (8 * 2**30, 2 * 2**30),  # a quarter of RAM
    (128 * 2**20, MIN_MEMORY_LIMIT),  # never below what the pipeline needs
])
def test_default_memory_limit_is_a_quarter_of_ram_with_a_ceiling(ram, expected):
    assert default_memory_limit(ram) == expected


def test_the_default_limit_applies_when_none_is_given(tmp_path):
    settings = resolve_settings({"warehouse_path": tmp_path / "wh.duckdb"}, env_file=None)
    assert settings.memory_limit is None
    assert settings.memory_limit_bytes() == default_memory_limit()
    with staging_connection(settings) as con:
        limit = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    # DuckDB shows the setting rounded ("2.3 GiB"): compare with how it shows the default.
    memory = duckdb.connect()
    memory.sql(f"SET memory_limit = '{default_memory_limit()}B'")
    assert limit == memory.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    memory.close()


def test_staging_connection_applies_the_limit_and_spills_in_the_staging_folder(tmp_path):
    settings = resolve_settings({"warehouse_path": tmp_path / "wh.duckdb", "memory_limit": "100MB"}, env_file=None)
    con = _open_staging(settings.staging_path, settings.memory_limit_bytes())
    try:
        limit, temp = con.sql("SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchall()[0]
        assert limit == "95.3 MiB"
        assert Path(temp) == settings.state_dir / "wh.staging.spill"
        # A sort bigger than the cap completes by spilling to that folder.
        con.sql("SET threads = 1; SET preserve_insertion_order = false")
        con.sql("CREATE TEMP TABLE big AS SELECT i, md5(i::VARCHAR) || md5((i + 1)::VARCHAR) AS s FROM range(3000000) r(i)")
        top = con.sql("SELECT s FROM big ORDER BY s LIMIT 1").fetchall()
        assert len(top) == 1
        spilled = con.sql("SELECT max(size) FROM duckdb_temporary_files()").fetchall()[0][0]
        assert spilled is not None and spilled > 0, "nothing was spilled: raise the data size"
    finally:
        con.close()


def test_staging_connection_keeps_memory_for_reuse(tmp_path, monkeypatch):
    """DuckDB keeps up to the cap in its block allocator and does not purge below it; pyarrow's
    pool becomes jemalloc (closeconv/allocators.py: why), unless the user chose a pool."""
    import pyarrow as pa

    settings = resolve_settings({"warehouse_path": tmp_path / "wh.duckdb", "memory_limit": "100MB"}, env_file=None)
    before = pa.default_memory_pool()
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    try:
        shown = "SELECT " + ", ".join(f"current_setting('{name}')" for name in KEEP_MEMORY_SETTINGS)
        with staging_connection(settings) as con:
            kept = con.sql(shown).fetchall()[0]
        # DuckDB shows these settings in its own rounding: compare with how it shows 100MB.
        memory = duckdb.connect()
        for name in KEEP_MEMORY_SETTINGS:
            memory.sql(f"SET {name} = '{100 * 10**6}B'")
        assert kept == memory.sql(shown).fetchall()[0]
        assert kept != duckdb.connect().sql(shown).fetchall()[0]  # not DuckDB's defaults
        memory.close()
        if "jemalloc" in pa.supported_memory_backends():
            assert pa.default_memory_pool().backend_name == "jemalloc"
        pa.set_memory_pool(before)
        monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
        with staging_connection(settings):
            assert pa.default_memory_pool().backend_name == before.backend_name  # the user's choice stands
    finally:
        pa.set_memory_pool(before)


@pytest.mark.parametrize("value, expected", [("lots", "is not a size"), ("3 parsecs", "is not a size"), ("1MB", "is below 64MB")])
def test_bad_memory_limit_exits_2_before_any_work(tmp_path, value, expected):
    landing = tmp_path / "landing"
    landing.mkdir()
    result = _run(landing, tmp_path / "wh" / "wh.duckdb", "--memory-limit", value)
    assert result.exit_code == 2, result.output
    assert f"memory limit {value!r} (from --memory-limit) {expected}" in result.output
    assert "--memory-limit / CLOSECONV_MEMORY_LIMIT" in result.output
    assert not (tmp_path / "wh").exists()
    env = _run(landing, tmp_path / "wh" / "wh.duckdb", env={"CLOSECONV_MEMORY_LIMIT": value})
    assert env.exit_code == 2 and "(from CLOSECONV_MEMORY_LIMIT)" in env.output
